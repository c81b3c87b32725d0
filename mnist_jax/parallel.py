"""Training on several devices with `jax.sharding`: a `Mesh`, `NamedSharding`s, no hand-written communication.

    mesh = make_mesh(config)                     # None when there is one device
    state, history = fit(config, train_data, test_data, mesh=mesh)

Several seeds (`TrainConfig.seeds > 1`): the seed axis of the stacked `TrainState` is split over a
"seed" mesh axis. Every device trains its own seeds on a full copy of the data, so the devices never
talk inside an epoch; only the per-seed metrics are gathered at its end.

One seed: every batch is split over a "batch" mesh axis (data parallel). Params and optimizer state
stay replicated and XLA inserts the gradient all-reduce. Sums are reduced in a different order, so
results agree with one device within float32 rounding, not bit for bit.

Several hosts: run the same program in every process after `jax.distributed.initialize()`
(`scripts/train.py --distributed`); `jax.devices()` then lists the devices of every host.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

if TYPE_CHECKING:
    from mnist_jax.train import TrainConfig

SEED_AXIS = "seed"
BATCH_AXIS = "batch"


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def make_mesh(config: TrainConfig, devices: Sequence[jax.Device] | None = None) -> Mesh | None:
    """A 1-D mesh over as many of `devices` (default: all) as split the work evenly; None for one.

    The seed axis when `config.seeds > 1`, else the batch axis: its size divides the seed count, or
    both batch sizes, so every device gets the same share.
    """
    devices = list(jax.devices() if devices is None else devices)
    if config.seeds > 1:
        axis, size = SEED_AXIS, _largest_divisor(config.seeds, len(devices))
    else:
        axis, size = BATCH_AXIS, _largest_divisor(math.gcd(config.batch_size, config.test_batch_size), len(devices))
    if jax.process_count() > 1 and size != len(devices):
        # Every process must own part of the mesh, or it would have no work and no results.
        unit = "seeds" if config.seeds > 1 else "the batch sizes"
        raise ValueError(f"{len(devices)} devices over {jax.process_count()} hosts cannot split {unit} evenly; "
                         f"use a multiple of {len(devices)}")
    if size == 1:
        return None
    return Mesh(np.array(devices[:size]), (axis,))


def describe(mesh: Mesh | None) -> str:
    """One line for the log: what is split over how many devices."""
    if mesh is None:
        return "one device"
    what = "the seeds" if SEED_AXIS in mesh.axis_names else "every batch (data parallel)"
    return f"{what} split over {mesh.size} {mesh.devices.flat[0].device_kind} devices"


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def state_sharding(mesh: Mesh) -> NamedSharding:
    """Stacked states split on their leading seed axis; a single state replicated."""
    return NamedSharding(mesh, PartitionSpec(SEED_AXIS) if SEED_AXIS in mesh.axis_names else PartitionSpec())


def batch_sharding(mesh: Mesh | None) -> NamedSharding | None:
    """How a batch is laid out inside the step: split on its leading axis for data parallelism."""
    if mesh is None or BATCH_AXIS not in mesh.axis_names:
        return None
    return NamedSharding(mesh, PartitionSpec(BATCH_AXIS))


def put(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """A pytree of host or device arrays laid out as `sharding`; across hosts too, where every
    process passes the same values (as after restoring a checkpoint)."""

    def place(x: Any) -> jax.Array:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jax.device_put(x, sharding)
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(place(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree_util.tree_map(place, tree)


def to_host(tree: Any) -> Any:
    """Numpy copies of a pytree of arrays, whole, also those of which each host holds only a part."""
    from jax.experimental import multihost_utils

    def fetch(x: Any) -> Any:
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return multihost_utils.process_allgather(x, tiled=True)
        return jax.device_get(x)

    return jax.tree_util.tree_map(fetch, tree)
