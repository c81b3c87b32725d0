"""Benchmark training: mnist-jax against the notebook's PyTorch code, side by side on this machine.

    python benchmarks/train_speed.py                         # 3 epochs of each, end to end and per epoch
    python benchmarks/train_speed.py --epochs 30 --skip-torch --json bench.json
    python benchmarks/train_speed.py --seeds 8 --skip-torch  # also 8 seeds at once (train --seeds 8)

mnist-jax runs as users run it, `python scripts/train.py --epochs N` in a child process: first with
an empty compilation cache, then again with the cache warm. Reported: compile time (first epoch
minus the median of the others), median epoch (train + test), one train step (from
benchmarks/step_speed.py, in this process), total training time, process wall time, peak host
memory (max RSS), peak device memory (GPU), final test accuracy. Where torch and torchvision
import (`pip install -e ".[torch]"`): the notebook's code end to end for the same N epochs in a
child process (benchmarks/torch_notebook.py: imports, data, training, its lines), and in this
process `--torch-epochs` epochs of each variant a PyTorch user might pick (the notebook's
DataLoader; the dataset in memory; channels-last; channels-last with torch.compile).
Expect on 2 AMD EPYC (Zen) cores: mnist-jax ~24 s per epoch, the notebook's code ~45 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_train(epochs: int, data_dir: str | None, cache_dir: Path, run_dir: Path, smoke_flags: list[str],
              seeds: int = 1) -> dict:
    """`python scripts/train.py` in a child process; its timings from the history.json it wrote."""
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--epochs", str(epochs), "--run-dir", str(run_dir),
           "--overwrite", "--progress", "off", "--compile-cache", str(cache_dir), "--seeds", str(seeds),
           "--no-doubts"]  # training alone: the rule of doubt a run chooses at its end is not training
    if data_dir:
        cmd += ["--data-dir", data_dir]
    cmd += smoke_flags
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"mnist-jax train failed:\n{result.stderr[-2000:]}")
    return {"wall_seconds": wall, **run_summary(run_dir)}


def run_summary(run_dir: Path) -> dict:
    """A finished run's timings and results, from its history.json."""
    record = json.loads((run_dir / "history.json").read_text())
    seconds = record["history"]["epoch_seconds"]
    median = statistics.median(seconds[1:] if len(seconds) > 1 else seconds)
    return {"train_seconds": sum(seconds), "median_epoch_seconds": median,
            "compile_seconds": max(seconds[0] - median, 0.0), "epoch_seconds": seconds,
            "final_test_accuracy": record["history"]["test_accuracy"][-1],
            "peak_device_bytes": record["system"].get("peak_device_bytes"), "device": record["system"]["device"]}


def seeds_row(run: dict, seeds: int) -> dict:
    """A `run_train` result of `--seeds N`, with the final test accuracy's mean and std over the seeds."""
    final = run["final_test_accuracy"]
    return {**run, "seeds": seeds, "final_test_accuracy_mean": statistics.mean(final),
            "final_test_accuracy_std": statistics.stdev(final) if len(final) > 1 else 0.0}


def measure(args: argparse.Namespace) -> dict:
    import jax

    from mnist_jax.run.environment import cpu_model

    result: dict = {"machine": {"cpu_count": os.cpu_count(), "processor": cpu_model(),
                                "python": platform.python_version(), "jax": jax.__version__,
                                "jax_backend": jax.default_backend()}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # --train-examples and --test-examples make a smoke run of the benchmark, not a measurement.
        smoke = [flag for name in ("train_examples", "test_examples") if getattr(args, name)
                 for flag in (f"--{name.replace('_', '-')}", str(getattr(args, name)))]
        cold, warm = [], []
        for r in range(args.repeat):
            cache = tmp / f"cache{r}"
            cold.append(run_train(args.epochs, args.data_dir, cache, tmp / "run", smoke))
            warm.append(run_train(args.epochs, args.data_dir, cache, tmp / "run", smoke))
        if args.seeds:
            result["seeds"] = seeds_row(run_train(args.epochs, args.data_dir, tmp / "cache0", tmp / "seeds", smoke,
                                                  args.seeds), args.seeds)
        result["peak_host_bytes"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024

        def med(runs, key):
            return statistics.median(r[key] for r in runs)

        jax_row = {k: med(cold, k) for k in ("median_epoch_seconds", "compile_seconds", "train_seconds", "wall_seconds")}
        jax_row.update(warm_cache_wall_seconds=med(warm, "wall_seconds"),
                       warm_cache_compile_seconds=med(warm, "compile_seconds"),
                       final_test_accuracy=cold[0]["final_test_accuracy"], device=cold[0]["device"],
                       peak_device_bytes=cold[0]["peak_device_bytes"], runs={"cold": cold, "warm": warm})
        result["mnist_jax"] = jax_row
        if not args.skip_torch:
            try:
                import torch_notebook
            except ImportError:
                print("torch/torchvision not importable: skipping the PyTorch rows")
            else:
                start = time.perf_counter()
                subprocess.run([sys.executable, str(ROOT / "benchmarks" / "torch_notebook.py"), "--epochs",
                                str(args.epochs)], check=True, capture_output=True)
                result["notebook_wall_seconds"] = time.perf_counter() - start
                result["pytorch"] = torch_notebook.benchmarks(args.torch_epochs,
                                                              torch_notebook.torchvision_root(tmp / "torchvision"))
    if not args.skip_step:
        import step_speed

        result["mnist_jax"]["median_step_seconds"] = step_speed.measure(["auto"], 8, 3, 512)["auto"]["median_step_seconds"]
    return result


def print_table(result: dict, epochs: int) -> None:
    j = result["mnist_jax"]
    gib = 2**30
    print(f"machine: {result['machine']['cpu_count']} x {result['machine']['processor']}, JAX {result['machine']['jax']} "
          f"on {j['device']} ({result['machine']['jax_backend']})")
    step = f"{1000 * j['median_step_seconds']:.0f} ms" if "median_step_seconds" in j else "-"
    print("| what | train step (512) | epoch, train + test | the epoch vs mnist-jax |\n| --- | --- | --- | --- |")
    print(f"| mnist-jax | {step} | {j['median_epoch_seconds']:.2f} s | 1.00x |")
    if "pytorch" in result:
        from torch_notebook import LABELS

        t = result["pytorch"]
        for name, label in LABELS.items():
            row = t[name]
            print(f"| {label} ({t['torch']}, {t['device']}) | {1000 * row['median_step_seconds']:.0f} ms | "
                  f"{row['median_epoch_seconds']:.2f} s | {row['median_epoch_seconds'] / j['median_epoch_seconds']:.2f}x |")
        print(f"\nend to end, {epochs} epochs: `python scripts/train.py` {j['wall_seconds']:.1f} s (empty compile cache), "
              f"the notebook's code {result['notebook_wall_seconds']:.1f} s "
              f"({result['notebook_wall_seconds'] / j['wall_seconds']:.2f}x)")
    print()
    print(f"mnist-jax, {epochs} epochs: compile {j['compile_seconds']:.2f} s, training {j['train_seconds']:.2f} s, "
          f"`mnist-jax train` wall {j['wall_seconds']:.2f} s (empty compile cache), "
          f"{j['warm_cache_wall_seconds']:.2f} s (warm), final test accuracy {j['final_test_accuracy']:.4f}")
    device = f", peak device memory {j['peak_device_bytes'] / gib:.2f} GiB" if j["peak_device_bytes"] else ""
    print(f"peak host memory (max RSS of the mnist-jax train processes) {result['peak_host_bytes'] / gib:.2f} GiB{device}")
    if "seeds" in result:
        s = result["seeds"]
        print(f"{s['seeds']} seeds at once, {epochs} epochs: training {s['train_seconds']:.2f} s "
              f"(median epoch {s['median_epoch_seconds']:.3f} s), wall {s['wall_seconds']:.2f} s, final test accuracy "
              f"{s['final_test_accuracy_mean']:.4f} +- {s['final_test_accuracy_std']:.4f}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=3, help="epochs of mnist-jax and of the notebook's code end to end "
                                                          "(default: %(default)s)")
    p.add_argument("--torch-epochs", type=int, default=3, help="epochs of each torch variant (default: %(default)s)")
    p.add_argument("--repeat", type=int, default=1, help="mnist-jax runs of each kind; medians reported (default: %(default)s)")
    p.add_argument("--skip-torch", action="store_true", help="do not run the PyTorch variants")
    p.add_argument("--skip-step", action="store_true", help="do not time mnist-jax's train step in this process")
    p.add_argument("--train-examples", type=int, default=None,
                   help="mnist-jax trains on the first N examples only (a smoke run, not a benchmark)")
    p.add_argument("--test-examples", type=int, default=None,
                   help="mnist-jax evaluates on the first N test examples only (a smoke run, not a benchmark)")
    p.add_argument("--seeds", type=int, default=None, help="also time train --seeds N: N models at once (default: not run)")
    p.add_argument("--data-dir", default=None, help="the TFDS data dir mnist-jax trains from (default: TFDS's)")
    p.add_argument("--json", type=Path, default=None, help="also write the results to this JSON file")
    args = p.parse_args()
    result = measure(args)
    print_table(result, args.epochs)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
