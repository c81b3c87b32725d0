"""Time one 512-batch train step of each formulation of the model, interleaved in one process.

    python benchmarks/step_speed.py                           # matmul and custom_vjp, 5 rounds
    python benchmarks/step_speed.py --conv matmul custom_vjp@512 custom_vjp@32 xla --rounds 3
    python benchmarks/step_speed.py --profile custom_vjp      # also where its step's time goes
    python benchmarks/step_speed.py --conv custom_vjp custom_vjp+shift   # what --augment shift costs

Each step's rate is stated beside the machine's own: a 4096^3 float32 matmul timed in the same
process (GFLOP/s), since a convolution network's step can at best run its arithmetic as fast as
one large matmul. The step's arithmetic is the CNN's: 14.26 MFLOP a training example (forward
4.88: conv1 0.39, conv2 4.46, dense 0.03; backward conv1's weight gradient once, conv2's and the
dense layer's weight and input gradients twice), 7.3 GFLOP a 512-batch.

Each formulation runs the package's own training program (`programs.train_programs`: Adam steps in one
`lax.scan`) over `--steps` batches of random digits; the rounds alternate between formulations, so
that a busy machine slows them alike. Also reported: how far each one's gradient is from the first
one's (relative to the gradient's largest entry). `--profile` traces one scan with the XLA profiler
and lists its fusions by time; the matmuls and convolutions that XLA hands to its libraries run
on the thread pool and appear as the rest of the step.
Expect on 2 AMD EPYC (Zen) cores: matmul ~270 ms, custom_vjp ~200 ms per step; xla ~8 s. On 2 quiet
Zen 4 cores the default formulation's step is about half the matmul rate (docs/measurements.md).
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import statistics
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from mnist_jax.config import TrainConfig
from mnist_jax.fast import model_for, programs
from mnist_jax.run import environment
from mnist_jax.steps import Batch, mean_loss


# Floating-point operations of one training example of the notebook's CNN (see above).
TRAIN_FLOP_PER_EXAMPLE = 2 * (26 * 26 * 32 * 9 * 1) * 2 + 2 * (11 * 11 * 64 * 9 * 32) * 3 + 2 * 1600 * 10 * 3
MATMUL_SIZE = 4096


def matmul_rate(rounds: int = 3) -> float:
    """GFLOP/s of a MATMUL_SIZE^3 float32 matmul on the default device, the median of `rounds`."""
    rng = np.random.default_rng(0)
    a, b = (jnp.asarray(rng.standard_normal((MATMUL_SIZE, MATMUL_SIZE), dtype=np.float32)) for _ in range(2))
    product = jax.jit(jnp.matmul)
    product(a, b).block_until_ready()
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        product(a, b).block_until_ready()
        seconds.append(time.perf_counter() - start)
    return 2 * MATMUL_SIZE ** 3 / statistics.median(seconds) / 1e9


def batches(steps: int, batch_size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.integers(0, 256, (steps * batch_size, 28, 28, 1), dtype=np.uint8))
    labels = jnp.asarray(rng.integers(0, 10, steps * batch_size, dtype=np.int32))
    indices = jnp.arange(steps * batch_size, dtype=jnp.int32).reshape(steps, batch_size)
    return images, labels, indices, jnp.ones((steps, batch_size), bool)


def gradient(config: TrainConfig, params, images, labels) -> list[np.ndarray]:
    batch = Batch(images, labels, jnp.ones(len(labels), bool))
    grads = jax.jit(jax.grad(lambda p: mean_loss(p, batch, model_for(config))[0]))(params)
    return [np.asarray(g) for g in jax.tree_util.tree_leaves(grads)]


def _config(spec: str, batch_size: int) -> TrainConfig:
    """FORMULATION, or FORMULATION@N for gradient slices of N examples (default: the backend's), and
    +AUGMENTATION (e.g. custom_vjp+shift) for each batch augmented first."""
    spec, _, augment = spec.partition("+")
    conv, _, microbatch = spec.partition("@")
    return TrainConfig(conv=conv, batch_size=batch_size, microbatch=int(microbatch) if microbatch else None,
                       augment=augment or "none")


def measure(formulations: list[str], steps: int, rounds: int, batch_size: int) -> dict:
    data = batches(steps, batch_size)
    runs = {}
    reference = None
    for conv in formulations:
        config = _config(conv, batch_size)
        compiled = programs.train_programs(config, steps)
        state = programs.initial_state(config)
        grads = gradient(config, state.params, data[0][:batch_size], data[1][:batch_size])
        reference = reference or grads
        spread = max(float(np.abs(g - r).max() / np.abs(r).max()) for g, r in zip(grads, reference))
        start = time.perf_counter()
        state, metrics = compiled.steps(state, *data, 0, length=steps)
        jax.block_until_ready(metrics)
        runs[conv] = {"programs": compiled, "state": state, "seconds": [], "compile_and_first_seconds":
                      time.perf_counter() - start, "gradient_relative_difference": spread}
    for _ in range(rounds):
        for conv, run in runs.items():
            start = time.perf_counter()
            run["state"], metrics = run["programs"].steps(run["state"], *data, 0, length=steps)
            jax.block_until_ready(metrics)
            run["seconds"].append((time.perf_counter() - start) / steps)
    return {conv: {"median_step_seconds": statistics.median(run["seconds"]), "step_seconds": run["seconds"],
                   "compile_and_first_seconds": run["compile_and_first_seconds"],
                   "gradient_relative_difference": run["gradient_relative_difference"]}
            for conv, run in runs.items()}


def profile(conv: str, steps: int, batch_size: int) -> list[tuple[str, float]]:
    """(fusion, ms per step) of one traced scan, largest first, and the rest of the step."""
    config = _config(conv, batch_size)
    compiled, state = programs.train_programs(config, steps), programs.initial_state(config)
    data = batches(steps, batch_size)
    state, metrics = compiled.steps(state, *data, 0, length=steps)
    jax.block_until_ready(metrics)
    with tempfile.TemporaryDirectory() as trace_dir:
        with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
            start = time.perf_counter()
            state, metrics = compiled.steps(state, *data, 0, length=steps)
            jax.block_until_ready(metrics)
            wall = time.perf_counter() - start
        (trace,) = Path(trace_dir).rglob("*.trace.json.gz")
        events = json.loads(gzip.decompress(trace.read_bytes()))["traceEvents"]
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e.get("name") == "thread_name"}
    busy = collections.defaultdict(float)
    for e in events:
        if e.get("ph") == "X" and "Eigen" in threads.get((e["pid"], e["tid"]), "") and not e["name"].startswith(
                ("ThunkExecutor", "ThreadpoolListener", "SlinkyThreadPool")):
            busy[e["name"]] += e["dur"] / 1000 / steps
    pool_threads = sum("Eigen" in name for name in threads.values()) or 1
    rows = sorted(((name, ms / pool_threads) for name, ms in busy.items()), key=lambda kv: -kv[1])
    rows.append(("the rest: library matmuls and convolutions, waits",
                 max(1000 * wall / steps - sum(ms for _, ms in rows), 0.0)))
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--conv", nargs="+", default=["matmul@512", "custom_vjp@512", "custom_vjp"],
                   help="formulations, each FORMULATION or FORMULATION@N for gradient slices of N examples "
                        "(default: %(default)s)")
    p.add_argument("--steps", type=int, default=8, help="steps in each timed scan (default: %(default)s)")
    p.add_argument("--rounds", type=int, default=5, help="timed scans of each formulation (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=512, help="(default: %(default)s)")
    p.add_argument("--profile", metavar="CONV", default=None, help="also list where that formulation's step goes")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    environment.configure(compile_cache=None)
    result = {"machine": {"cpu": environment.cpu_model(), "jax": jax.__version__, "backend": jax.default_backend(),
                          "device": jax.devices()[0].device_kind},
              "steps": measure(args.conv, args.steps, args.rounds, args.batch_size)}
    rate = result["matmul_gflops"] = matmul_rate()
    step_gflop = TRAIN_FLOP_PER_EXAMPLE * args.batch_size / 1e9
    print(f"{result['machine']['cpu']}, JAX {jax.__version__} ({jax.default_backend()}): one {args.batch_size}-batch "
          f"train step ({step_gflop:.2f} GFLOP), median of {args.rounds} scans of {args.steps}; a "
          f"{MATMUL_SIZE}^3 float32 matmul here: {rate:.0f} GFLOP/s")
    print("| formulation | per step | GFLOP/s | of the matmul rate | vs first | gradient vs first |\n"
          "| --- | --- | --- | --- | --- | --- |")
    first = result["steps"][args.conv[0]]["median_step_seconds"]
    for conv, row in result["steps"].items():
        row["gflops"] = step_gflop / row["median_step_seconds"]
        print(f"| {conv} | {1000 * row['median_step_seconds']:.1f} ms | {row['gflops']:.0f} | {row['gflops'] / rate:.0%} "
              f"| {first / row['median_step_seconds']:.2f}x | {row['gradient_relative_difference']:.1e} |")
    if args.profile:
        rows = profile(args.profile, args.steps, args.batch_size)
        result["profile"] = {"conv": args.profile, "ms_per_step": dict(rows)}
        print(f"\nwhere a {args.profile} step goes (XLA's own fusions, per pool thread, then the rest):")
        print("| fusion | ms per step |\n| --- | --- |")
        for name, ms in rows[:15] + rows[-1:]:
            print(f"| {name} | {ms:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
