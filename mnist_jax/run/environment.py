"""Process-wide JAX settings, made once by every entry point before JAX starts its backends.

    from mnist_jax.run import environment
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

from mnist_jax.config import Checked, setting
from mnist_jax.errors import UserError

_FROM_ENVIRONMENT = "from the environment"


def default_compile_cache() -> str:
    """`$JAX_COMPILATION_CACHE_DIR` when set, else `~/.cache/mnist-jax/jax-compile` (or under $XDG_CACHE_HOME)."""
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return os.environ["JAX_COMPILATION_CACHE_DIR"]
    return str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mnist-jax" / "jax-compile")


@dataclass(frozen=True)
class Distributed(Checked):
    """How this process joins a multi-host run (`train --distributed`); None fields are filled in
    by the cluster (SLURM, Open MPI, Kubernetes, Cloud TPU)."""

    coordinator: str | None = setting(None, "with --distributed: the address of process 0", metavar="HOST:PORT",
                                      default_text="$JAX_COORDINATOR_ADDRESS")
    num_processes: int | None = setting(None, "with --distributed: how many processes", minimum=1,
                                        default_text="the cluster's")
    process_id: int | None = setting(None, "with --distributed: this process's index, from 0", minimum=0,
                                     default_text="the cluster's")


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
    """XLA_FLAGS checked before XLA reads them: XLA aborts the process on a flag it does not know or
    a malformed value, with pages of output. The flags this project documents are checked here; any
    other is tried in a child process first (about a second), whose first complaint is the error."""
    others = []
    for flag in flags.split():
        name, _, value = flag.partition("=")
        if name == "--xla_force_host_platform_device_count":
            if not (value.isdigit() and int(value) >= 1):
                raise UserError(f"XLA_FLAGS: {flag}: the device count must be a whole number of at least 1")
        else:
            others.append(flag)
    if not others:
        return
    import subprocess

    child = subprocess.run([sys.executable, "-c", "import jax; jax.devices('cpu')"], capture_output=True, text=True,
                           env={**os.environ, "XLA_FLAGS": " ".join(others), "JAX_PLATFORMS": "cpu"})
    if child.returncode != 0:
        said = [line.split("] ", 1)[1] for line in child.stderr.splitlines()
                if line[:1] in "EF" and line[1:5].isdigit() and "] " in line]
        raise UserError(f"XLA_FLAGS: {said[0] if said else f'XLA refused {flags!r}'}")


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


# The CPU's vector and floating-point instruction sets that LLVM, and so XLA:CPU, compiles for
# (flag names as /proc/cpuinfo writes them): XLA targets the host's CPU name and features, so two
# CPUs that differ in any of these can differ in a float's last bits (AVX-512 against AVX2: 1e-7 of
# the test loss). x86: SSE to AVX-512 and AMX, FMA, F16C; Arm: NEON (asimd), SVE, SME, BF16, I8MM.
CODEGEN_ISA = frozenset({
    "sse", "sse2", "pni", "ssse3", "sse4_1", "sse4_2", "sse4a", "avx", "avx2", "fma", "fma4", "f16c",
    "avx512f", "avx512dq", "avx512cd", "avx512bw", "avx512vl", "avx512ifma", "avx512vbmi", "avx512_vbmi2",
    "avx512_vnni", "avx512_bitalg", "avx512_vpopcntdq", "avx512_bf16", "avx512_fp16", "avx_vnni",
    "avx_vnni_int8", "avx_ne_convert", "avx_ifma", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
    "asimd", "asimdhp", "asimddp", "asimdfhm", "fphp", "sve", "sve2", "svebf16", "svei8mm", "bf16", "i8mm",
    "sme", "sme2"})

# The fields of `system_info`'s record that decide a run's bits (see `numerics_key`).
NUMERICS_FIELDS = ("backend", "device", "jax", "jaxlib", "xla_flags", "arch", "cpu", "cpu_vendor",
                   "cpu_family", "cpu_model_number", "cpu_isa", "cpu_threads", "processes", "devices")


def system_info(seconds: float | None) -> dict[str, Any]:
    """Where a run was trained: what decides whether another machine gets the same bits
    (`numerics_key`), and what the run cost.

    - backend, device: JAX's backend and the device kind (the GPU's name on a GPU, "cpu" on a CPU);
    - jax, jaxlib: the versions; xla_flags: $XLA_FLAGS as given ("" if unset);
    - arch: `platform.machine()`; cpu: the CPU's model name; cpu_vendor, cpu_family,
      cpu_model_number: /proc/cpuinfo's vendor_id, cpu family and model on x86 (LLVM derives its
      target CPU, e.g. znver3 or znver4, from them), CPU implementer and part on Arm, as written
      there, or None; cpu_isa: the sorted `CODEGEN_ISA` flags the CPU has (None without /proc/cpuinfo);
    - cpu_threads (this process's CPUs), processes, devices: how the work was split;
    - train_seconds (None while the run trains), peak_device_bytes (None on a CPU): the cost, not
      part of the numerics.
    """
    import jax
    import jaxlib

    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}  # None on a CPU
    return {"backend": jax.default_backend(), "device": device.device_kind, "jax": jax.__version__,
            "cpu": cpu_model(), "cpu_threads": len(os.sched_getaffinity(0)), "processes": jax.process_count(),
            "devices": jax.device_count(), "train_seconds": seconds, "peak_device_bytes": stats.get("peak_bytes_in_use"),
            "jaxlib": jaxlib.__version__, "xla_flags": os.environ.get("XLA_FLAGS", ""), "arch": platform.machine(),
            **cpu_identity()}


def numerics_key(system: dict[str, Any]) -> dict[str, Any]:
    """The part of a `system_info` record that decides the bits a run computes; a field the record
    lacks (an older record) is left out."""
    return {name: system[name] for name in NUMERICS_FIELDS if name in system}


def same_numerics(recorded: dict[str, Any], here: dict[str, Any] | None = None) -> bool:
    """Whether this process (or the record `here`) computes the same bits as the one that made the
    `recorded` system record: every field of NUMERICS_FIELDS present in both, known (not None) and
    equal. A record that lacks one, or does not know it, is not the same."""
    here = system_info(0.0) if here is None else here
    return all(recorded.get(name) is not None and recorded.get(name) == here.get(name) for name in NUMERICS_FIELDS)


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo (all of them alike here), or {} without it."""
    fields: dict[str, str] = {}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return fields
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name.strip(), value.strip())
    return fields


def cpu_identity() -> dict[str, Any]:
    """cpu_vendor, cpu_family, cpu_model_number and cpu_isa for `system_info` (None where unknown)."""
    info = _cpuinfo()
    flags = info.get("flags", info.get("Features"))  # x86, Arm
    return {"cpu_vendor": info.get("vendor_id", info.get("CPU implementer")),
            "cpu_family": info.get("cpu family", info.get("CPU architecture")),
            "cpu_model_number": info.get("model", info.get("CPU part")),
            "cpu_isa": None if flags is None else sorted(CODEGEN_ISA.intersection(flags.split()))}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
