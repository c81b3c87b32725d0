"""How much memory a run needs, checked before anything is compiled or allocated.

    memory.check(config, num_test=10_000)   # a ConfigError naming the settings if they cannot fit

The programs' working memory grows linearly with the examples they hold at once: XLA's memory
analysis of the compiled programs (JAX 0.10.2, a 2-core x86 CPU) gives up to 518 KB per training
example in a gradient slice (the "matmul" formulation; "custom_vjp" 390 KB) and 279 KB per evaluated
example, for every seed, the same at batch 256, 512 and 1024 and for 1 or 2 seeds. Where evaluation
takes its batch in slices (the CNN on a CPU, 32 images at a time), 279 KB per example of a slice and
30 KB per example of the batch (28-32 KB measured from batch 256 to 2048). Training and evaluation
run one after the other, so the larger of the two counts, plus the uint8 dataset itself.
"""

from __future__ import annotations

import os
import re
import resource
from pathlib import Path

import jax

from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.fast.cnn import evaluation_slice
from mnist_jax.fast.programs import gradient_slices
from mnist_jax.steps import eval_batch_size

TRAIN_BYTES_PER_EXAMPLE = 518_000
EVAL_BYTES_PER_EXAMPLE = 279_000
EVAL_BYTES_PER_SLICED_EXAMPLE = 30_000
DATASET_BYTES = 70_000 * (28 * 28 + 4)  # all of MNIST as uint8 images and int32 labels


def needed_bytes(config: TrainConfig, num_test: int, devices: int = 1,
                 mesh: jax.sharding.Mesh | None = None) -> int:
    """About how much memory training `config` over `mesh` takes on each of `devices` that share its
    seeds or batches (see mnist_jax.fast.parallel), evaluating `num_test` examples per epoch."""
    at_once = config.batch_size // gradient_slices(config, mesh)
    train = TRAIN_BYTES_PER_EXAMPLE * at_once * config.models
    evaluate = evaluation_bytes(config, eval_batch_size(config.test_batch_size, num_test)) * config.models
    return -(-max(train, evaluate) // devices) + DATASET_BYTES


def evaluation_bytes(config: TrainConfig, batch_size: int) -> int:
    """About how much memory evaluating one of `config`'s models `batch_size` examples at a time takes."""
    at_once = evaluation_slice(config)
    if at_once is None or batch_size <= at_once:
        return EVAL_BYTES_PER_EXAMPLE * batch_size
    return EVAL_BYTES_PER_EXAMPLE * at_once + EVAL_BYTES_PER_SLICED_EXAMPLE * batch_size


def available_bytes(device: jax.Device | None = None) -> int | None:
    """Memory free for this process: the accelerator's (what its allocator may still take), or on a
    CPU the least of the system's available memory, the room left under this process's cgroup v2
    limit (a container's) and under its address-space limit (`ulimit -v`); None where none is known."""
    device = device or jax.local_devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    limits = []
    try:
        limits.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError):
        pass
    limits += [room for room in (_cgroup_room(), _address_space_room()) if room is not None]
    return min(limits, default=None)


def _cgroup_room(root: Path = Path("/sys/fs/cgroup"), cgroups: Path = Path("/proc/self/cgroup")) -> int | None:
    """The room left under this process's cgroup memory limit (a container's): v2's memory.max less
    memory.current, or v1's memory.limit_in_bytes less memory.usage_in_bytes; None without a limit.
    A container sees its own group at the mount's root, the host at the path /proc lists: both tried."""
    rooms = []
    try:
        lines = cgroups.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, group = (line.split(":", 2) + ["", ""])[:3]
        if controllers == "":
            files, places = ("memory.max", "memory.current"), (root / group.lstrip("/"), root)
        elif "memory" in controllers.split(","):
            files, places = ("memory.limit_in_bytes", "memory.usage_in_bytes"), (root / "memory" / group.lstrip("/"),
                                                                                 root / "memory")
        else:
            continue
        for place in places:
            try:
                limit, used = ((place / name).read_text().strip() for name in files)
            except OSError:
                continue
            if limit != "max" and int(limit) < 2**60:  # v1 writes "no limit" as a number near 2^63
                rooms.append(int(limit) - int(used))
            break
    return min(rooms, default=None)


def _address_space_room() -> int | None:
    """RLIMIT_AS (`ulimit -v`) less the address space already mapped, None without a limit."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return None
    try:
        status = Path("/proc/self/status").read_text()
        mapped = int(re.search(r"^VmSize:\s+(\d+) kB", status, re.M).group(1)) * 1024
    except (OSError, AttributeError):
        mapped = 0
    return soft - mapped


def pools(mesh: jax.sharding.Mesh | None) -> int:
    """Separate memories that a run over `mesh` spreads its seeds or batches over: each accelerator
    has its own; the CPU devices of one process share the host's."""
    if mesh is None:
        return 1
    return mesh.size if mesh.devices.flat[0].platform != "cpu" else jax.process_count()


def check(config: TrainConfig, num_test: int, mesh: jax.sharding.Mesh | None = None,
          available: int | None = None) -> None:
    """A ConfigError if `config`, spread over `mesh`, needs more memory than is `available` (default:
    `available_bytes()`) in each of its memories."""
    available = available_bytes() if available is None else available
    shared_by = pools(mesh)
    needed = needed_bytes(config, num_test, shared_by, mesh)
    if available is not None and needed > available:
        values = f"{len(config.sweep_values)} values of --sweep {config.sweep_name} x " if config.sweep else ""
        seeds = f"--seeds {config.seeds} x " if config.seeds > 1 else ""
        each = f" on each of {shared_by} devices" if shared_by > 1 else ""
        fewer = "fewer values, " if config.sweep else ""
        raise ConfigError(
            f"{values}{seeds}--batch-size {config.batch_size} / --test-batch-size {config.test_batch_size} needs "
            f"about {needed / 1e9:.1f} GB{each}, more than the {available / 1e9:.1f} GB free on "
            f"{jax.local_devices()[0].device_kind}; use {fewer}fewer seeds or smaller batches")


def check_evaluation(config: TrainConfig, batch_size: int, num_test: int, flag: str,
                     available: int | None = None) -> None:
    """A ConfigError if evaluating `num_test` examples `batch_size` at a time (the setting `flag`) with
    `config`'s model needs more memory than is `available`, as `check` says for training."""
    available = available_bytes() if available is None else available
    needed = evaluation_bytes(config, eval_batch_size(batch_size, num_test)) + DATASET_BYTES
    if available is not None and needed > available:
        raise ConfigError(f"{flag} {batch_size} needs about {needed / 1e9:.1f} GB, more than the "
                          f"{available / 1e9:.1f} GB free on {jax.local_devices()[0].device_kind}; use a smaller one")
