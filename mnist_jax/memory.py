"""How much memory a run needs, checked before anything is compiled or allocated.

    memory.check(config, num_test=10_000)   # a ConfigError naming the settings if they cannot fit

The programs' working memory grows linearly with the examples they hold at once: XLA's memory
analysis of the compiled programs (JAX 0.10.2, a 2-core x86 CPU) gives up to 518 KB per training
example in a gradient slice (the "matmul" formulation; "custom_vjp" 390 KB) and 279 KB per evaluated
example, for every seed, the same at batch 256, 512 and 1024 and for 1 or 2 seeds. Training and
evaluation run one after the other, so the larger of the two counts, plus the uint8 dataset itself.
"""

from __future__ import annotations

import os

import jax

from mnist_jax.config import TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.loop import gradient_slices
from mnist_jax.steps import eval_batch_size

TRAIN_BYTES_PER_EXAMPLE = 518_000
EVAL_BYTES_PER_EXAMPLE = 279_000
DATASET_BYTES = 70_000 * (28 * 28 + 4)  # all of MNIST as uint8 images and int32 labels


def needed_bytes(config: TrainConfig, num_test: int, devices: int = 1,
                 mesh: jax.sharding.Mesh | None = None) -> int:
    """About how much memory training `config` over `mesh` takes on each of `devices` that share its
    seeds or batches (see mnist_jax.parallel), evaluating `num_test` examples per epoch."""
    at_once = config.batch_size // gradient_slices(config, mesh)
    train = TRAIN_BYTES_PER_EXAMPLE * at_once * config.seeds
    evaluate = EVAL_BYTES_PER_EXAMPLE * eval_batch_size(config.test_batch_size, num_test) * config.seeds
    return -(-max(train, evaluate) // devices) + DATASET_BYTES


def available_bytes(device: jax.Device | None = None) -> int | None:
    """Memory free for this process: the accelerator's (what its allocator may still take), or on a
    CPU the system's available memory; None where neither is known."""
    device = device or jax.local_devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return stats["bytes_limit"] - stats.get("bytes_in_use", 0)
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return None


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
        seeds = f"--seeds {config.seeds} x " if config.seeds > 1 else ""
        each = f" on each of {shared_by} devices" if shared_by > 1 else ""
        raise ConfigError(
            f"{seeds}--batch-size {config.batch_size} / --test-batch-size {config.test_batch_size} needs about "
            f"{needed / 1e9:.1f} GB{each}, more than the {available / 1e9:.1f} GB free on "
            f"{jax.local_devices()[0].device_kind}; use fewer seeds or smaller batches")
