"""mnist-jax: the PyTorch MNIST notebook in pure-functional JAX/Flax.

The package in layers, each importing only those before it (tests/test_layout.py holds this):

- `mnist_jax/` the core a learner reads: `model` (the CNN), `metrics`, `optimizer`, `steps` (the
  state, loss, step, epoch and evaluation); beside them the settings (`config`, `choices`: what each
  part reads, `sweep`, `recipes`),
  the other networks and the NNX twin (`networks`, `model_nnx`), `augment`, and `errors`, `files`;
- `data/` the datasets, declared once, through TFDS;
- `hooks/` what watches a run: the hook protocol, the console, TensorBoard, the profiler, logs,
  `--hook`'s spec;
- `fast/` the same numbers sooner: the convolution's formulations, the compiled programs, devices;
- `apps/` what uses a trained model: inference, explain, images, drawing, plotting, export, web, demo;
- `run/` a run's lifecycle: the loop, the experiment, the run directory, history, checkpoints,
  evaluation;
- `cli/` the command line.

`import mnist_jax` is instant: a submodule is imported when first used. The modules' names from
before the folders (`mnist_jax.rundir`, `mnist_jax.loop`, ...) still import, as the new modules.
"""

import importlib
import importlib.abc
import importlib.util
import pkgutil
import sys

__version__ = "0.3.0"

_SUBMODULES = frozenset(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))

# The flat names of 0.2 and where each module now lives.
MOVED = {
    "console": "hooks.console", "summaries": "hooks.tensorboard", "profiling": "hooks.profiling",
    "kernels": "fast.kernels", "parallel": "fast.parallel", "loop": "run.loop", "experiment": "run.experiment",
    "rundir": "run.rundir", "checkpoints": "run.checkpoints", "memory": "run.memory",
    "environment": "run.environment", "history": "run.history", "inference": "apps.inference",
    "explain": "apps.explain", "images": "apps.images", "drawing": "apps.drawing", "plotting": "apps.plotting",
    "export": "apps.export", "web": "apps.web", "demo": "apps.demo", "torch_params": "apps.torch_params",
    "datasets": "data.datasets", "models": "fast",
}


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import mnist_jax.OLD` gives the module that now lives at `mnist_jax.MOVED[OLD]`."""

    def find_spec(self, fullname, path=None, target=None):
        prefix, _, name = fullname.rpartition(".")
        if prefix == __name__ and name in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module(f"{__name__}.{MOVED[spec.name.rpartition('.')[2]]}")
        spec.loader_state = module.__spec__  # the import system sets the alias's spec on the module
        return module

    def exec_module(self, module):
        module.__spec__ = module.__spec__.loader_state


if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedFinder())


def lazy_submodules(package: str, path: list[str], also: dict[str, str] | None = None):
    """A package's `__getattr__` that imports its modules on first use (`also`: other names for some)."""
    names = frozenset(m.name for m in pkgutil.iter_modules(path) if not m.name.startswith("_"))
    also = also or {}

    def __getattr__(name: str):
        if name in names or name in also:
            return importlib.import_module(f"{package}.{also.get(name, name)}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


__getattr__ = lazy_submodules(__name__, __path__, MOVED)


def __dir__():
    return sorted([*globals(), *_SUBMODULES])
