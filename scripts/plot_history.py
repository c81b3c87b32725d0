"""Redraw the training-history figure of a saved run, without retraining.

    python scripts/plot_history.py runs/20261129-223500                  # -> RUN_DIR/training.svg
    python scripts/plot_history.py runs/20261129-223500 --out figures/training.svg

Two panels as in the notebook: train/test loss, and train/test accuracy with a dotted 0.98 line.
For a run of several seeds (train.py --seeds N): each curve's mean over the seeds, in its min-max band.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_jax.cli import fail


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a run directory written by scripts/train.py")
    p.add_argument("--out", type=Path, default=None, help="output file, .svg or .png (default: RUN_DIR/training.svg)")
    args = p.parse_args(argv)

    from mnist_jax import plotting, runs

    try:
        _, history = runs.load_history(args.run_dir)
        out = args.out or args.run_dir / "training.svg"
        plotting.save_figure(plotting.plot_history(history), out)
    except runs.RunError as e:
        fail(str(e))
    except OSError as e:
        fail(f"{e.filename}: cannot write ({e.strerror})")
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
