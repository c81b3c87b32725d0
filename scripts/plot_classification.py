"""Redraw the classification figure of a saved run: random test digits with label and prediction.

    python scripts/plot_classification.py runs/20261129-223500           # -> RUN_DIR/classification.svg
    python scripts/plot_classification.py runs/20261129-223500 --seed 3 --rows 3 --cols 4

Uses the run's final params on the prepared test split (prepared first if needed).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_jax.cli import fail, positive


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a run directory written by scripts/train.py")
    p.add_argument("--out", type=Path, default=None,
                   help="output file, .svg or .png (default: RUN_DIR/classification.svg)")
    p.add_argument("--seed", type=int, default=None, help="which digits to show (default: the run's seed)")
    p.add_argument("--rows", type=positive(int), default=2, help="grid rows (default: %(default)s)")
    p.add_argument("--cols", type=positive(int), default=3, help="grid columns (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    args = p.parse_args(argv)

    import jax
    import tensorflow_datasets as tfds

    from mnist_jax import data, plotting, runs
    from mnist_jax.model import Classifier

    tfds.display_progress_bar(False)
    try:
        config, _, params = runs.load_run(args.run_dir)
        images, labels = data.load("test", args.data_dir)
        key = jax.random.key(config.seed if args.seed is None else args.seed)
        fig = plotting.classification_sample(params, Classifier(conv=config.conv), images, labels, key,
                                             size=(args.rows, args.cols))
        out = args.out or args.run_dir / "classification.svg"
        plotting.save_figure(fig, out)
    except (runs.RunError, data.DataError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"{e.filename}: cannot write ({e.strerror})")
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
