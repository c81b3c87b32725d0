"""The package's layers and sizes, held so that later work cannot regrow them.

Each module belongs to a layer by its folder, lowest first: the core at the top level of
mnist_jax/, then data/, hooks/, fast/, apps/, run/, cli/ (mnist_jax/__init__.py, the lazy-import
hub, and __main__.py stand apart). A module imports only its own layer and those below it, no two
modules import each other however indirectly, and the folders, the command line and the learner's
core stay small. The imports are read with `ast`, every one of them: inside functions and under
`if TYPE_CHECKING:` too, since an annotation's import is a dependency the reader follows as well.
"""

from __future__ import annotations

import ast
import dataclasses
import runpy
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import mnist_jax

PACKAGE = Path(mnist_jax.__file__).resolve().parent
LAYERS = ("", "data", "hooks", "fast", "apps", "run", "cli")  # lowest first; "" is the top level, the core
APART = ("mnist_jax", "mnist_jax.__main__")  # in no layer: the package's own module and `python -m`
MAX_MODULES_PER_FOLDER = 15
MAX_CLI_LINES = 460  # 448 after the layered redesign; --format and the stop's reports added a few
CORE_FILES = ("model.py", "metrics.py", "optimizer.py", "steps.py")  # what a learner reads first
MAX_CORE_LINES = 550


@dataclasses.dataclass(frozen=True)
class Import:
    """One import statement's dependency: `importer` imports `imported`, at `line` of its file."""

    importer: str
    imported: str
    line: int

    def __str__(self) -> str:
        return f"{self.importer} -> {self.imported} (line {self.line})"


def module_files() -> dict[str, Path]:
    """Every module of the package by its dotted name (a package by its folder's name)."""
    files = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def layer(module: str) -> int:
    """The layer of a module, by its folder: its index in LAYERS."""
    parts = module.split(".")
    folder = parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else ""
    assert folder in LAYERS, f"{module}: the folder {folder}/ is in no layer; add it to LAYERS in {__file__}"
    return LAYERS.index(folder)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The module that importing `name` runs: `name` itself, or the module that defines it (for
    `from pkg import f`), an old flat name through `mnist_jax.MOVED`; None outside the package."""
    parts = name.split(".")
    if parts[0] != "mnist_jax":
        return None
    if len(parts) > 1 and parts[1] in mnist_jax.MOVED:
        parts = ["mnist_jax", *mnist_jax.MOVED[parts[1]].split("."), *parts[2:]]
    while parts and ".".join(parts) not in modules:
        parts.pop()
    return ".".join(parts) or None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> Iterator[Import]:
    """The package's modules that `module` imports, each statement wherever it stands."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    seen = set()  # `from pkg import a, b` of one module is one dependency
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up one folder for each dot past the first
                anchor = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names]  # a name that is no module resolves to base
        else:
            continue
        for name in names:
            imported = _resolve(name, modules)
            if imported not in (None, module) and (imported, node.lineno) not in seen:
                seen.add((imported, node.lineno))
                yield Import(module, imported, node.lineno)


def all_imports() -> list[Import]:
    modules = module_files()
    return [found for module, path in modules.items() for found in imports_of(module, path, modules)]


def _layered(imports: list[Import]) -> list[Import]:
    return [i for i in imports if i.importer not in APART and i.imported not in APART]


def upward_imports(imports: list[Import]) -> list[str]:
    """Each import of a higher layer by a lower one, said with both layers."""
    def name(index: int) -> str:
        return f"{LAYERS[index]}/" if LAYERS[index] else "the core"

    return [f"{i}: {name(layer(i.importer))} imports {name(layer(i.imported))}"
            for i in _layered(imports) if layer(i.imported) > layer(i.importer)]


def cycles(imports: list[Import]) -> list[list[Import]]:
    """The import cycles: for each strongly connected component of two or more modules (Tarjan's
    algorithm), the imports between its members."""
    graph: dict[str, set[str]] = {}
    for i in _layered(imports):
        graph.setdefault(i.importer, set()).add(i.imported)
        graph.setdefault(i.imported, set())
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    components: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = lowest[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                lowest[node] = min(lowest[node], lowest[nxt])
            elif nxt in stack:
                lowest[node] = min(lowest[node], index[nxt])
        if lowest[node] == index[node]:
            component = set()
            while not component or node not in component:
                component.add(stack.pop())
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return [[i for i in _layered(imports) if i.importer in c and i.imported in c] for c in components if len(c) > 1]


def non_blank_lines(paths) -> int:
    return sum(1 for path in paths for line in path.read_text().splitlines() if line.strip())


def test_no_module_imports_a_higher_layer():
    upward = upward_imports(all_imports())
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


def test_no_import_cycles():
    found = cycles(all_imports())
    assert not found, "import cycles:\n" + "\n".join(" ; ".join(map(str, c)) for c in found)


def test_the_checks_see_every_kind_of_import(tmp_path):
    """The rules catch what they are for: an upward import inside a function, a relative one, one
    of a module's name through `from pkg import name`, and a cycle through TYPE_CHECKING."""
    modules = {"mnist_jax.steps": tmp_path / "steps.py", "mnist_jax.run": tmp_path / "run" / "__init__.py",
               "mnist_jax.run.loop": tmp_path / "run" / "loop.py", "mnist_jax.run.rundir": tmp_path / "run" / "rundir.py"}
    sources = {"mnist_jax.steps": "def f():\n    from mnist_jax.run import loop\n",
               "mnist_jax.run": "from mnist_jax import steps\n",
               "mnist_jax.run.loop": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .rundir import X\n",
               "mnist_jax.run.rundir": "import mnist_jax.run.loop\n"}
    for module, path in modules.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(sources[module])
    imports = [i for module, path in modules.items() for i in imports_of(module, path, modules)]
    assert [str(i) for i in imports] == ["mnist_jax.steps -> mnist_jax.run.loop (line 2)",
                                         "mnist_jax.run -> mnist_jax.steps (line 1)",
                                         "mnist_jax.run.loop -> mnist_jax.run.rundir (line 3)",
                                         "mnist_jax.run.rundir -> mnist_jax.run.loop (line 1)"]
    assert upward_imports(imports) == ["mnist_jax.steps -> mnist_jax.run.loop (line 2): the core imports run/"]
    assert [[str(i) for i in c] for c in cycles(imports)] == [[str(i) for i in imports[2:]]]


def test_no_folder_holds_more_than_15_modules():
    counts: dict[Path, int] = {}
    for path in module_files().values():
        counts[path.parent] = counts.get(path.parent, 0) + 1
    crowded = [f"{folder.relative_to(PACKAGE.parent)}/: {n} modules" for folder, n in counts.items()
               if n > MAX_MODULES_PER_FOLDER]
    assert not crowded, f"more than {MAX_MODULES_PER_FOLDER} modules in a folder: " + ", ".join(crowded)


def test_the_command_line_stays_small():
    lines = non_blank_lines(sorted((PACKAGE / "cli").rglob("*.py")))
    assert lines <= MAX_CLI_LINES, (f"mnist_jax/cli/ has {lines} non-blank lines, more than {MAX_CLI_LINES}: "
                                    f"the command parses, calls the library and prints; move the work below it")


def test_the_learners_core_stays_small():
    lines = non_blank_lines(PACKAGE / name for name in CORE_FILES)
    assert lines <= MAX_CORE_LINES, f"{', '.join(CORE_FILES)} have {lines} non-blank lines, more than {MAX_CORE_LINES}"


def test_reading_a_digit_loads_no_optax_orbax_or_tfds():
    """`mnist-jax predict` reads the bundled run and a picture: what training needs stays unloaded."""
    code = ("import sys; from mnist_jax.cli import main; status = main(['predict', sys.argv[1]]); "
            "print(status, sorted(m for m in ('optax', 'orbax', 'tensorflow_datasets') if m in sys.modules))")
    picture = Path(__file__).parent / "fixtures" / "digits" / "3-pen-clean.png"
    result = subprocess.run([sys.executable, "-c", code, str(picture)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 []", result.stdout
    assert result.stdout.startswith(f"{picture}: 3 ("), result.stdout


def test_one_train_step_stays_short_to_read():
    """The learner's step through the core (docs/extending.md counts it with scripts/train_path.py):
    about 200 lines at most, and every function the count names still exists."""
    path = runpy.run_path(str(Path(__file__).resolve().parent.parent / "scripts" / "train_path.py"))
    core = sum(path["length"](file, name) for file, name in path["CORE"])
    assert core <= 200, f"one train step through the core is {core} lines: keep the speed in mnist_jax/fast"
    assert {file for file, _ in path["CORE"]} == {f"mnist_jax/{name}" for name in CORE_FILES}
    assert all(path["length"](file, name) > 0 for file, name in path["PRODUCT"])


def test_the_names_of_version_0_2_still_import_as_the_moved_modules():
    """Code written against the flat package (its README's snippet, the notebook's imports) runs on."""
    code = ("from mnist_jax import experiment, images, inference, rundir, history, loop\n"
            "from mnist_jax.models import model_for\n"
            "import mnist_jax.summaries, mnist_jax.rundir, mnist_jax.run.rundir\n"
            "assert mnist_jax.rundir is mnist_jax.run.rundir and rundir is mnist_jax.run.rundir\n"
            "assert mnist_jax.rundir.__spec__.name == 'mnist_jax.run.rundir'\n"
            "print(experiment.__name__, loop.__name__, mnist_jax.summaries.TensorBoard.__module__, model_for.__module__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["mnist_jax.run.experiment", "mnist_jax.run.loop", "mnist_jax.hooks.tensorboard",
                                     "mnist_jax.fast"]
