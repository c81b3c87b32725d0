"""Process-wide JAX settings, made once by every entry point before JAX starts its backends.

    from mnist_jax import environment
    environment.configure()                          # what every `mnist-jax` command does first
    environment.configure(compile_cache=None)        # no persistent compilation cache

Float32 matmul precision is not set here: it is part of each run's config (`TrainConfig.precision`),
passed to the model's layers, and recorded in the run's history.json.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mnist_jax.errors import UserError

_FROM_ENVIRONMENT = "from the environment"


def default_compile_cache() -> str:
    """`$JAX_COMPILATION_CACHE_DIR` when set, else `~/.cache/mnist-jax/jax-compile` (or under $XDG_CACHE_HOME)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    return str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-jax" / "jax-compile")


@dataclass(frozen=True)
class Distributed:
    """How this process joins a multi-host run; None fields are filled in by the cluster (SLURM, ...)."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None


class _QuietAfterFailedSave:
    """sys.unraisablehook that drops the one error Orbax's tensorstore callbacks raise, on their own
    threads, once a failed save has closed Orbax's event loop ("Event loop is closed"): the failure
    itself is reported as one line, and dozens of these tracebacks would bury it. Others go on."""

    def __init__(self, hook):
        self.hook = hook

    def __call__(self, unraisable) -> None:
        if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == "Event loop is closed"):
            self.hook(unraisable)


def configure(*, compile_cache: str | os.PathLike | None = _FROM_ENVIRONMENT,
              distributed: Distributed | None = None) -> None:
    """Settings for this process; call it before any JAX computation.

    - GPU memory is allocated as needed, not XLA's default 75% of the card up front: this model
      needs little, and a second process (the benchmark's child, another run) can share the GPU.
    - The persistent compilation cache in `compile_cache` (default: `default_compile_cache()`), so
      later runs skip compiling; None turns it off. Every program is cached, however quick to compile.
    - Library output that says nothing to a user of the commands is hidden: Orbax's warnings and
      error logs (through absl). (TFDS's progress bars are turned off by `data.prepare`, so that
      commands that need no data, such as predict, do not import TFDS.)
    - `distributed`: start `jax.distributed` for a multi-host run.
    - After a failed checkpoint write, Orbax's leftover threads print no tracebacks (see
      `_QuietAfterFailedSave`); the commands report the failure in one line.
    """
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    _check_xla_flags(os.environ.get("XLA_FLAGS", ""))
    if not isinstance(sys.unraisablehook, _QuietAfterFailedSave):
        sys.unraisablehook = _QuietAfterFailedSave(sys.unraisablehook)
    import jax

    # Orbax reports a failed read or write through absl as well as by raising; the commands turn the
    # exception into one line, so the log's tracebacks would only repeat it.
    logging.getLogger("absl").setLevel(logging.CRITICAL)
    if compile_cache == _FROM_ENVIRONMENT:
        compile_cache = default_compile_cache()
    if compile_cache is not None and not _writable(Path(compile_cache)):
        print(f"warning: the compilation cache {compile_cache} cannot be written; compiling without it",
              file=sys.stderr)
        compile_cache = None
    if compile_cache is None:
        jax.config.update("jax_enable_compilation_cache", False)
    else:
        jax.config.update("jax_enable_compilation_cache", True)
        jax.config.update("jax_compilation_cache_dir", os.fspath(compile_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    if distributed is not None and not jax.distributed.is_initialized():
        # CPU processes need gloo for their cross-process collectives; GPUs use NCCL regardless.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        try:
            jax.distributed.initialize(distributed.coordinator, distributed.num_processes, distributed.process_id)
        except (RuntimeError, ValueError, TypeError) as e:
            raise UserError(f"--distributed: cannot start the multi-host runtime ({str(e).splitlines()[0]})") from None
    try:  # start the backends now: a platform that is not there is a user's setting, not a bug
        jax.devices()
    except RuntimeError as e:
        platforms = os.environ.get("JAX_PLATFORMS") or jax.config.jax_platforms
        asked = f"JAX_PLATFORMS={platforms}: " if platforms else ""
        raise UserError(f"{asked}{str(e).splitlines()[0][:300]}") from None


def _check_xla_flags(flags: str) -> None:
    """The XLA flags this project documents, checked before XLA reads them (it aborts the process on
    a malformed value, with pages of output)."""
    for flag in flags.split():
        name, _, value = flag.partition("=")
        if name == "--xla_force_host_platform_device_count" and not (value.isdigit() and int(value) >= 1):
            raise UserError(f"XLA_FLAGS: {flag}: the device count must be a whole number of at least 1")


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def system_info(seconds: float) -> dict[str, Any]:
    """Where a run was trained: what decides whether another machine gets the same bits."""
    import jax

    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}  # None on a CPU
    return {"backend": jax.default_backend(), "device": device.device_kind, "jax": jax.__version__,
            "cpu": cpu_model(), "cpu_threads": len(os.sched_getaffinity(0)), "processes": jax.process_count(),
            "devices": jax.device_count(), "train_seconds": seconds, "peak_device_bytes": stats.get("peak_bytes_in_use")}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
