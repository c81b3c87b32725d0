"""Time the data pipeline: the first preparation into an empty TFDS data dir, then loading both splits.

    python benchmarks/data_speed.py --repeat 3 [--json data.json]

Expect on 2 Sapphire Rapids cores: preparation ~3.5 s, loading both splits ~0.6 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=3, help="measurements of each (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    from mnist_jax import data

    prepare_s, load_s = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as data_dir:
            start = time.perf_counter()
            data.prepare(data_dir)
            prepare_s.append(time.perf_counter() - start)
            start = time.perf_counter()
            for split in data.SPLITS:
                data.load_split(split, data_dir)
            load_s.append(time.perf_counter() - start)
    result = {"prepare_seconds": prepare_s, "load_both_splits_seconds": load_s}
    for name, values in result.items():
        print(f"{name:26s} median {statistics.median(values):6.2f}  min {min(values):6.2f}  max {max(values):6.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
