"""Benchmark a sweep against separate runs: `train --sweep lr=V1,...` (one program) and one
`train --lr V` per value, each `python scripts/train.py` in a child process with an empty
compilation cache, as a user's first try is.

    python benchmarks/sweep_speed.py                                  # 4 learning rates, 1 epoch
    python benchmarks/sweep_speed.py --values 1e-4,3e-4,1e-3,3e-3 --epochs 2 --json sweep.json

Reported per way: wall time of the processes (end to end: imports, data, compiling, training,
figures), the training time from history.json, and both per model. Expect on 2 AMD EPYC (Zen) cores
and 1 epoch of the full data (docs/measurements.md): per model, the sweep about as fast as separate
runs in training time (the CPU is busy either way) and faster end to end (one process, one compile).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train(flags: list[str], run_dir: Path, cache: Path) -> dict:
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--run-dir", str(run_dir), "--progress", "off",
           "--compile-cache", str(cache), "--no-tensorboard", *flags]
    start = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"mnist-jax train failed:\n{result.stderr[-2000:]}")
    history = json.loads((run_dir / "history.json").read_text())["history"]
    return {"wall_seconds": wall, "train_seconds": sum(history["epoch_seconds"]),
            "final_test_accuracy": history["test_accuracy"][-1]}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--values", default="1e-4,3e-4,1e-3,3e-3", help="learning rates (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = p.parse_args(argv)
    values = args.values.split(",")
    common = ["--epochs", str(args.epochs)] + (["--data-dir", args.data_dir] if args.data_dir else [])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        swept = train([*common, "--sweep", f"lr={args.values}"], tmp / "sweep", tmp / "cache-sweep")
        singles = [train([*common, "--lr", v], tmp / f"single-{i}", tmp / f"cache-{i}") for i, v in enumerate(values)]
    n = len(values)
    separate = {k: sum(s[k] for s in singles) for k in ("wall_seconds", "train_seconds")}
    record = {"values": values, "epochs": args.epochs, "sweep": swept, "separate": singles,
              "per_model": {"sweep": {k: swept[k] / n for k in separate}, "separate": {k: v / n for k, v in separate.items()}}}
    print(f"| {n} learning rates, {args.epochs} epoch(s) | wall, all | wall per model | training per model |")
    print("|---|---|---|---|")
    print(f"| one sweep (`--sweep`) | {swept['wall_seconds']:.1f} s | {swept['wall_seconds'] / n:.1f} s | "
          f"{swept['train_seconds'] / n:.1f} s |")
    print(f"| {n} separate runs | {separate['wall_seconds']:.1f} s | {separate['wall_seconds'] / n:.1f} s | "
          f"{separate['train_seconds'] / n:.1f} s |")
    for value, single, acc in zip(values, singles, swept["final_test_accuracy"]):
        print(f"lr {value}: final test accuracy {acc:.4f} in the sweep, {single['final_test_accuracy']:.4f} alone")
    if args.json:
        args.json.write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
