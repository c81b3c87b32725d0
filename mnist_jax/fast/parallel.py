"""Training on several devices with `jax.sharding`: a `Mesh`, `NamedSharding`s, no hand-written communication.

    mesh = make_mesh(seeds=8, batch_sizes=(512, 1024))   # None when there is one device
    # then mnist_jax.run.loop places the state, data and batches with the shardings below

Several seeds (`TrainConfig.seeds > 1`): the seed axis of the stacked `TrainState` is split over a
"seed" mesh axis. Every device trains its own seeds on a full copy of the data, so the devices never
talk inside an epoch; only the per-seed metrics are gathered at its end.

One seed: every batch is split over a "batch" mesh axis (data parallel). Params and optimizer state
stay replicated and XLA inserts the gradient all-reduce. Sums are reduced in a different order, so
results agree with one device within float32 rounding, not bit for bit.

Several hosts: run the same program in every process after `jax.distributed.initialize()`
(`mnist-jax train --distributed`, which `mnist_jax.run.environment.configure` starts); `jax.devices()`
then lists the devices of every host.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from mnist_jax.errors import ConfigError

SEED_AXIS = "seed"
BATCH_AXIS = "batch"


def mesh_axis(seeds: int, batch_sizes: Sequence[int], num_devices: int, num_processes: int = 1) -> tuple[str, int]:
    """The mesh for the work: (axis name, how many devices), the most that split it evenly.

    Several seeds split the seed axis, so the size divides the seed count; one seed splits every
    batch, so the size divides each batch size. Over several processes every device must take part,
    or a process would have no work and no results: a ConfigError says what count would do.
    """
    def largest_divisor(n: int) -> int:
        return max(d for d in range(1, min(n, num_devices) + 1) if n % d == 0)

    if seeds > 1:
        axis, size = SEED_AXIS, largest_divisor(seeds)
    else:
        axis, size = BATCH_AXIS, largest_divisor(math.gcd(*batch_sizes))
    if num_processes > 1 and size != num_devices:
        unit = "the seed count" if seeds > 1 else "the batch sizes"
        raise ConfigError(f"{num_devices} devices over {num_processes} hosts cannot split {unit} evenly; "
                          f"use a multiple of {num_devices}")
    return axis, size


def make_mesh(seeds: int, batch_sizes: Sequence[int], devices: Sequence[jax.Device] | None = None) -> Mesh | None:
    """A 1-D mesh over as many of `devices` (default: all) as `mesh_axis` says; None for one."""
    devices = list(jax.devices() if devices is None else devices)
    axis, size = mesh_axis(seeds, batch_sizes, len(devices), jax.process_count())
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


@dataclasses.dataclass(frozen=True)
class SplitBatches:
    """A `Model` (mnist_jax.model) whose every batch is laid out split over a mesh's devices (data
    parallel): XLA then splits the whole step, and adds the gradients' parts with one all-reduce."""

    model: Any
    sharding: NamedSharding

    def init(self, key: jax.Array) -> Any:
        return self.model.init(key)

    def apply(self, params: Any, images: jax.Array, **train: Any) -> jax.Array:
        return self.model.apply(params, jax.lax.with_sharding_constraint(images, self.sharding), **train)

    def train_apply(self, params: Any, images: jax.Array, key: jax.Array) -> tuple[jax.Array, Any]:
        return self.model.train_apply(params, jax.lax.with_sharding_constraint(images, self.sharding), key)


def split_batches(model: Any, mesh: Mesh | None) -> Any:
    """`model`, its batches split over `mesh` where the mesh splits batches (`batch_sharding`)."""
    sharding = batch_sharding(mesh)
    return model if sharding is None else SplitBatches(model, sharding)


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


def is_primary() -> bool:
    """Whether this process writes the run's files: process 0 (the only one on a single host)."""
    return jax.process_index() == 0


def agree_any(flag: bool) -> bool:
    """True in every process if `flag` is true in any; a collective, so every process must call it."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(np.max(multihost_utils.process_allgather(np.int32(flag))))


def from_primary(values: tuple[int, ...]) -> tuple[int, ...]:
    """Process 0's `values` (each fits in int32) in every process (a collective), so that one
    process decides for all."""
    if jax.process_count() == 1:
        return values
    from jax.experimental import multihost_utils

    return tuple(int(v) for v in multihost_utils.broadcast_one_to_all(np.asarray(values, np.int32)))


def barrier(name: str) -> None:
    """Wait until every process got here (a no-op on one host)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)
