"""Time the data pipeline: first preparation into an empty TFDS data dir, then loading both splits.

    python scripts/benchmark_data.py --repeat 3

Each repeat prepares into a fresh temporary data dir (the bundled IDX files, checked, written as
ArrayRecord) and loads train and test back through `tfds.data_source`. Prints the median and the
range; targets on a 2-core machine: preparation <= 15 s, loading both splits <= 2 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time

from mnist_jax.cli import positive


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=positive(int), default=3, help="measurements of each (default: %(default)s)")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = p.parse_args(argv)

    import tensorflow_datasets as tfds

    from mnist_jax import data

    tfds.display_progress_bar(False)
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
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
