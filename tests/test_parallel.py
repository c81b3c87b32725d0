"""Sharded training on 4 simulated CPU devices agrees with one device.

XLA fixes the device count when JAX starts, so each check runs in a fresh process with
XLA_FLAGS=--xla_force_host_platform_device_count=4.
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from mnist_jax import parallel
from mnist_jax.train import TrainConfig

ROOT = Path(__file__).resolve().parent.parent

# For each seed count: trains with the mesh make_mesh picks for 4 devices and with none (device 0
# only), and prints what the tests compare. One process for all, as starting JAX costs seconds.
CHILD = r"""
import json, sys
import jax, numpy as np
from mnist_jax import data, parallel, train

data_dir = sys.argv[1]
train_data = tuple(a[:1024] for a in data.load_split("train", data_dir))
test_data = tuple(a[:2048] for a in data.load_split("test", data_dir))
results = {}
for seeds in map(int, sys.argv[2:]):
    config = train.TrainConfig(epochs=2, seeds=seeds)
    mesh = parallel.make_mesh(config)
    sharded_state, sharded = train.fit(config, train_data, test_data, mesh=mesh)
    single_state, single = train.fit(config, train_data, test_data)
    kernel = sharded_state.params["conv2"]["kernel"]
    leaves = zip(jax.tree_util.tree_leaves(sharded_state.params), jax.tree_util.tree_leaves(single_state.params))
    results[seeds] = {
        "devices": jax.device_count(),
        "mesh": None if mesh is None else dict(mesh.shape),
        "kernel_devices": len(kernel.sharding.device_set),
        "kernel_shard_shape": list(kernel.addressable_shards[0].data.shape),
        "sharded": {k: sharded[k] for k in train.METRIC_KEYS},
        "single": {k: single[k] for k in train.METRIC_KEYS},
        "max_param_diff": max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in leaves),
        "learning_rate": config.learning_rate,
    }
print(json.dumps(results))
"""


def four_devices() -> dict[str, str]:
    return {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}


@pytest.fixture(scope="module")
def child(data_dir) -> dict:
    result = subprocess.run([sys.executable, "-c", CHILD, str(data_dir), "4", "1"], capture_output=True,
                            text=True, env=four_devices(), cwd=ROOT, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_same_histories(out: dict) -> None:
    for key in ("train_loss", "test_loss"):
        np.testing.assert_allclose(out["sharded"][key], out["single"][key], rtol=1e-4)
    for key in ("train_accuracy", "test_accuracy"):  # at most a couple of borderline digits may flip
        np.testing.assert_allclose(out["sharded"][key], out["single"][key], atol=2.5e-3)
    # Adam moves each parameter by about the learning rate per step, whatever its gradient's size; a
    # wrong split of the work would differ by whole steps, rounding by a small fraction of one.
    assert out["max_param_diff"] <= 0.2 * out["learning_rate"], out["max_param_diff"]


def test_seeds_split_over_devices_match_one_device(child):
    out = child["4"]
    assert out["devices"] == 4 and out["mesh"] == {"seed": 4}
    # Each device holds one seed's kernel: the stacked (4, 3, 3, 32, 64) array is split, not copied.
    assert out["kernel_devices"] == 4 and out["kernel_shard_shape"] == [1, 3, 3, 32, 64]
    assert np.shape(out["sharded"]["test_accuracy"]) == (2, 4)
    assert_same_histories(out)


@pytest.mark.parametrize("seeds, devices, used", [(8, 4, 4), (3, 4, 3), (6, 4, 3), (5, 4, 1), (4, 1, 1)])
def test_the_mesh_uses_as_many_devices_as_split_the_seeds_evenly(seeds, devices, used):
    assert parallel._largest_divisor(seeds, devices) == used


def test_one_device_needs_no_mesh():
    assert parallel.make_mesh(TrainConfig(seeds=4), jax.devices()[:1]) is None
    assert parallel.make_mesh(TrainConfig(), jax.devices()[:1]) is None


def test_one_seed_is_data_parallel_and_matches_one_device(child):
    out = child["1"]
    assert out["mesh"] == {"batch": 4}
    assert out["kernel_devices"] == 4 and out["kernel_shard_shape"] == [3, 3, 32, 64]  # params replicated
    assert np.shape(out["sharded"]["test_accuracy"]) == (2,)
    assert_same_histories(out)


def train_script(data_dir, *flags, devices: int = 4) -> subprocess.Popen:
    env = {**four_devices(), "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "scripts" / "train.py"), "--data-dir", str(data_dir), "--no-refresh-figures",
         "--no-compile-cache", *flags],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


SMALL = ("--seeds", "4", "--train-examples", "1024")


def finish(process: subprocess.Popen) -> str:
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]
    return stdout


@pytest.fixture(scope="module")
def four_device_run(data_dir, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("parallel") / "run"
    return run_dir, finish(train_script(data_dir, *SMALL, "--epochs", "2", "--run-dir", str(run_dir)))


def test_train_script_splits_seeds_over_all_devices(four_device_run):
    run_dir, stdout = four_device_run
    assert "the seeds split over 4 cpu devices" in stdout.lower()
    top = json.loads((run_dir / "history.json").read_text())["history"]["test_accuracy"]
    for i, seed in enumerate(range(4)):
        seed_run = json.loads((run_dir / f"seed-{seed}" / "history.json").read_text())
        assert seed_run["config"]["seed"] == seed and seed_run["config"]["seeds"] == 1
        assert seed_run["history"]["test_accuracy"] == [epoch[i] for epoch in top]


def two_processes(data_dir, *flags) -> list[str]:
    """Two "hosts" of 2 CPU devices each, talking through jax.distributed on localhost."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    processes = [train_script(data_dir, "--distributed", "--coordinator", f"localhost:{port}", "--num-processes", "2",
                              "--process-id", str(i), *flags, devices=2) for i in range(2)]
    return [finish(p) for p in processes]


def test_two_processes_with_distributed_train_resume_and_match_one_process(four_device_run, data_dir, tmp_path):
    run_dir = tmp_path / "run"
    outputs = two_processes(data_dir, *SMALL, "--epochs", "1", "--run-dir", str(run_dir))
    assert all("the seeds split over 4 cpu devices" in out.lower() for out in outputs)
    assert "Wrote" in outputs[0] and "Wrote" not in outputs[1]  # only process 0 writes the run
    # Restoring puts the checkpoint's host arrays back onto devices that span both processes.
    outputs = two_processes(data_dir, "--resume", str(run_dir), "--epochs", "2")
    assert all(f"Resuming {run_dir} after epoch 0" in out for out in outputs)
    mine = json.loads((run_dir / "history.json").read_text())
    one_process = json.loads((four_device_run[0] / "history.json").read_text())
    assert mine["finished"] and len(list(run_dir.glob("seed-*"))) == 4
    for key in ("train_loss", "test_loss"):
        np.testing.assert_allclose(mine["history"][key], one_process["history"][key], rtol=1e-4)
    for key in ("train_accuracy", "test_accuracy"):
        np.testing.assert_allclose(mine["history"][key], one_process["history"][key], atol=2.5e-3)
