"""Sharded training on simulated CPU devices agrees with one device, in one process and across two.

XLA fixes the device count when JAX starts, so these checks run in fresh processes with
XLA_FLAGS=--xla_force_host_platform_device_count=N.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import SMALL, SMALL_FLAGS, wait_for_output

from mnist_jax.errors import ConfigError
from mnist_jax.fast import parallel

EPOCHS = 2  # as in the small_fits references

# One seed with every batch split over 2 devices, and where the state of 2 seeds is placed; prints
# what the tests compare. One process for both, as starting JAX costs seconds.
CHILD = r"""
import json, sys
import jax, numpy as np
from mnist_jax import data
from mnist_jax.run import environment, loop
from mnist_jax.fast import parallel
from mnist_jax.config import TrainConfig
from mnist_jax.run.history import NOTEBOOK_KEYS
from mnist_jax.fast.programs import initial_state

environment.configure()
data_dir, epochs, small = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
train_data, test_data = data.load_split("train", data_dir), data.load_split("test", data_dir)
config = TrainConfig(epochs=epochs, **small)
mesh = parallel.make_mesh(config.seeds, (config.batch_size, config.test_batch_size))
state, history = loop.fit(config, train_data, test_data, mesh=mesh)
kernel = state.params["conv2"]["kernel"]
seeds_mesh = parallel.make_mesh(2, (config.batch_size, config.test_batch_size))
seeds_kernel = initial_state(TrainConfig(seeds=2), parallel.state_sharding(seeds_mesh)).params["conv2"]["kernel"]
import tempfile
from mnist_jax.config import RunOptions
from mnist_jax.errors import ConfigError
from mnist_jax.run import experiment
try:  # refused before anything trains: every device runs whole epochs
    experiment.run(config, tempfile.mkdtemp() + "/run", RunOptions(data_dir=data_dir, log_interval=2), hooks=[])
    log_interval = "accepted"
except ConfigError as e:
    log_interval = str(e)
print(json.dumps({
    "log_interval": log_interval,
    "devices": jax.device_count(),
    "mesh": dict(mesh.shape),
    "kernel_devices": len(kernel.sharding.device_set),
    "kernel_shard_shape": list(kernel.addressable_shards[0].data.shape),
    "history": {k: history[k] for k in NOTEBOOK_KEYS},
    "params": {jax.tree_util.keystr(path): np.asarray(p).ravel().tolist()
               for path, p in jax.tree_util.tree_leaves_with_path(state.params)},
    "seeds_mesh": dict(seeds_mesh.shape),
    "seeds_kernel_devices": len(seeds_kernel.sharding.device_set),
    "seeds_kernel_shard_shape": list(seeds_kernel.addressable_shards[0].data.shape),
}))
"""


def simulated_devices(n: int) -> dict[str, str]:
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={n}".strip()
    return {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}


@pytest.mark.parametrize("seeds, devices, expected", [(8, 4, ("seed", 4)), (3, 4, ("seed", 3)), (6, 4, ("seed", 3)),
                                                      (5, 4, ("seed", 1)), (4, 1, ("seed", 1))])
def test_the_mesh_uses_as_many_devices_as_split_the_seeds_evenly(seeds, devices, expected):
    assert parallel.mesh_axis(seeds, (512, 1024), devices) == expected


def test_one_seed_splits_batches_over_devices_that_divide_both_batch_sizes():
    assert parallel.mesh_axis(1, (512, 1024), 8) == ("batch", 8)
    assert parallel.mesh_axis(1, (384, 1024), 8) == ("batch", 8)
    assert parallel.mesh_axis(1, (96, 1000), 16) == ("batch", 8)  # gcd 8


def test_several_hosts_must_use_every_device():
    assert parallel.mesh_axis(8, (512, 1024), 4, num_processes=2) == ("seed", 4)
    with pytest.raises(ConfigError, match="4 devices over 2 hosts cannot split the seed count evenly; use a "
                                          "multiple of 4"):
        parallel.mesh_axis(6, (512, 1024), 4, num_processes=2)


def test_one_device_needs_no_mesh():
    assert parallel.make_mesh(4, (512, 1024), jax.devices()[:1]) is None
    assert parallel.make_mesh(1, (512, 1024), jax.devices()[:1]) is None


@pytest.fixture(scope="module")
def child_process(data_dir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CHILD, str(data_dir), str(EPOCHS), json.dumps(SMALL)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=simulated_devices(2))


@pytest.fixture(scope="module")
def child(child_process, small_fits) -> dict:
    """The child's report; the one-device references (small_fits) are trained while it rundir."""
    stdout, stderr = child_process.communicate(timeout=600)
    assert child_process.returncode == 0, stderr[-3000:]
    return json.loads(stdout.strip().splitlines()[-1])


def assert_same_histories(mine: dict, reference: dict) -> None:
    for key in ("train_loss", "test_loss"):
        np.testing.assert_allclose(mine[key], reference[key], rtol=1e-4)
    for key in ("train_accuracy", "test_accuracy"):  # at most a couple of borderline digits may flip
        np.testing.assert_allclose(mine[key], reference[key], atol=2.5e-3)


def test_one_seed_is_data_parallel_and_matches_one_device(child, small_fits):
    assert child["devices"] == 2 and child["mesh"] == {"batch": 2}
    assert child["kernel_devices"] == 2 and child["kernel_shard_shape"] == [3, 3, 32, 64]  # params replicated
    state, history = small_fits[1]
    assert_same_histories(child["history"], history)
    # Adam moves each parameter by about the learning rate per step, whatever its gradient's size; a
    # wrong split of the work would differ by whole steps, rounding by a small fraction of one.
    single = jax.tree_util.tree_leaves_with_path(state.params)
    assert sorted(child["params"]) == sorted(jax.tree_util.keystr(path) for path, _ in single)
    for path, p in single:
        np.testing.assert_allclose(child["params"][jax.tree_util.keystr(path)], np.ravel(p),
                                   atol=0.2 * SMALL["learning_rate"])


def test_log_interval_is_refused_where_the_devices_run_whole_epochs(child):
    assert child["log_interval"] == "--log-interval 2 has no effect on a run spread over 2 devices"


def test_the_state_of_several_seeds_is_split_over_the_devices(child):
    assert child["seeds_mesh"] == {"seed": 2}
    # Each device holds one seed's kernel: the stacked (2, 3, 3, 32, 64) array is split, not copied.
    assert child["seeds_kernel_devices"] == 2 and child["seeds_kernel_shard_shape"] == [1, 3, 3, 32, 64]


class Host:
    """One of two "hosts" of one CPU device each, running `mnist-jax train --distributed`; its output
    goes to files, so that neither process can block on a full pipe while the other is read."""

    def __init__(self, index: int, port: int, workdir: Path, data_dir: Path, *flags: str):
        self.out, self.err = workdir / f"host{index}.out", workdir / f"host{index}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mnist_jax", "train", "--distributed", "--coordinator", f"localhost:{port}",
                 "--num-processes", "2", "--process-id", str(index), "--data-dir", str(data_dir), "--no-doubts",
                 *flags],
                stdout=out, stderr=err, env=simulated_devices(1), cwd=workdir)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        wait_for_output(self.process, self.out, self.err, text, timeout)

    def finish(self) -> tuple[int, str, str]:
        code = self.process.wait(timeout=600)
        return code, self.out.read_text(), self.err.read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_hosts_pick_one_run_stop_together_resume_and_match_one_device(small_fits, data_dir, tmp_path):
    flags = ("--seeds", "2", *SMALL_FLAGS)
    port = free_port()
    # 5 epochs: more than it reaches (it stops by epoch 1), and few enough steps (5 x 4 x 2 seeds) that
    # its programs compile quickly, as those of the 2-epoch run it is resumed to (fast/compiling.py).
    hosts = [Host(i, port, tmp_path, data_dir, *flags, "--epochs", "5") for i in range(2)]
    # SIGTERM to host 1 alone, as a scheduler preempting one machine would: both stop after one epoch.
    hosts[1].wait_for("[epoch  0]")
    hosts[1].process.send_signal(signal.SIGTERM)
    results = [host.finish() for host in hosts]
    stopped = []
    for code, out, err in results:
        assert code == 128 + signal.SIGTERM, err[-3000:]
        assert "Traceback" not in err and "the seeds split over 2 cpu devices" in out.lower()
        stopped.append([line for line in err.splitlines() if line.startswith("Stopped after epoch")])
    assert stopped[0] == stopped[1] and len(stopped[0]) == 1
    # Both hosts wrote into the one run directory that process 0 named.
    (run_dir,) = (tmp_path / "runs").iterdir()
    done = len(json.loads((run_dir / "history.json").read_text())["history"]["train_loss"])
    # Stopped after epoch 0, or after epoch 1 if the signal came after host 1 had checked for one.
    assert f"Stopped after epoch {done - 1};" in stopped[0][0] and done <= EPOCHS

    port = free_port()
    hosts = [Host(i, port, tmp_path, data_dir, "--resume", str(run_dir.relative_to(tmp_path)), "--epochs", str(EPOCHS))
             for i in range(2)]
    results = [host.finish() for host in hosts]
    for code, out, err in results:
        assert code == 0, err[-3000:]
        assert f"Resuming {run_dir.relative_to(tmp_path)} after epoch {done - 1}" in out
    assert "Wrote" in results[0][1] and "Wrote" not in results[1][1]  # only process 0 writes the run
    record = json.loads((run_dir / "history.json").read_text())
    assert record["finished"] and record["system"]["processes"] == 2 and len(list(run_dir.glob("seed-*"))) == 2
    assert_same_histories(record["history"], small_fits[2][1])
