"""How long one train step is to read: the functions from `python scripts/train.py` to the
optimizer's update, each one's non-blank lines, by file, as docs/extending.md counts them.

    python scripts/train_path.py            # the whole path, then the learner's core alone

The counting rule: every function, method or class body on the call chain of one train step with
the defaults on a CPU (the run's setup included, its reporting and error handling left out), its
docstring and comments counted, blank lines not; a module-level table counts where the path reads it.
"""

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (file, name) in the order a reader meets them; "Class.method" for a method.
PRODUCT = [
    ("scripts/train.py", None),
    ("mnist_jax/cli/__init__.py", "script_main"), ("mnist_jax/cli/__init__.py", "main"),
    ("mnist_jax/cli/__init__.py", "execute"), ("mnist_jax/cli/training.py", "train"),
    ("mnist_jax/run/experiment.py", "run"), ("mnist_jax/run/experiment.py", "_train"),
    ("mnist_jax/run/loop.py", "train"),
    ("mnist_jax/fast/programs.py", "train_programs"), ("mnist_jax/fast/programs.py", "_train_programs"),
    ("mnist_jax/fast/programs.py", "run_epoch"), ("mnist_jax/fast/programs.py", "gradient_slices"),
    ("mnist_jax/fast/programs.py", "sliced_gradient"),
    ("mnist_jax/fast/__init__.py", "model_for"), ("mnist_jax/fast/cnn.py", "fast_cnn"),
    ("mnist_jax/fast/cnn.py", "Classifier"), ("mnist_jax/fast/cnn.py", "ConvReluPool"),
    ("mnist_jax/fast/kernels.py", "conv_relu_pool"),
]
CORE = [
    ("mnist_jax/steps.py", "train_epoch"), ("mnist_jax/steps.py", "shuffle"), ("mnist_jax/steps.py", "padded_batches"),
    ("mnist_jax/steps.py", "train_steps"), ("mnist_jax/steps.py", "train_step"),
    ("mnist_jax/steps.py", "loss_and_gradient"), ("mnist_jax/steps.py", "mean_loss"),
    ("mnist_jax/steps.py", "batch_losses"),
    ("mnist_jax/model.py", "LinenModel.train_apply"), ("mnist_jax/model.py", "Classifier"),
    ("mnist_jax/model.py", "to_float"), ("mnist_jax/model.py", "torch_uniform"),
    ("mnist_jax/optimizer.py", "make_optimizer"), ("mnist_jax/optimizer.py", "_optimizer"),
    ("mnist_jax/optimizer.py", "schedule"), ("mnist_jax/optimizer.py", "OPTIMIZERS"),
    ("mnist_jax/optimizer.py", "constant"),
    ("mnist_jax/metrics.py", "step_sums"), ("mnist_jax/metrics.py", "METRICS"),
]


def non_blank(lines: list[str]) -> int:
    return sum(1 for line in lines if line.strip())


def length(path: str, name: str | None) -> int:
    """Non-blank lines of `name` (a function, class, Class.method or a module-level assignment) in `path`."""
    text = (ROOT / path).read_text()
    lines = text.splitlines()
    if name is None:
        return non_blank(lines)
    scope: list[ast.stmt] = ast.parse(text).body
    *outer, last = name.split(".")
    for part in outer:
        scope = next(n for n in scope if isinstance(n, ast.ClassDef) and n.name == part).body
    for node in scope:
        named = getattr(node, "name", None) or (isinstance(node, (ast.Assign, ast.AnnAssign)) and
                                                 ast.unparse(node.targets[0] if isinstance(node, ast.Assign) else node.target))
        if named == last:
            first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
            return non_blank(lines[first - 1:node.end_lineno])
    raise LookupError(f"{path}: no {name}")


def report(title: str, path: list[tuple[str, str | None]]) -> int:
    by_file: dict[str, int] = {}
    for file, name in path:
        by_file[file] = by_file.get(file, 0) + length(file, name)
    print(f"{title}: {sum(by_file.values())} lines in {len(by_file)} files")
    for file, count in by_file.items():
        print(f"  {count:4d}  {file}")
    return sum(by_file.values())


if __name__ == "__main__":
    core = report("The learner's core (mnist_jax.steps.train_epoch to the update)", CORE)
    product = report("Before it, from the script (what `python scripts/train.py` adds)", PRODUCT)
    print(f"In all: {core + product} lines")
    sys.exit(0)
