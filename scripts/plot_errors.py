"""Where a trained run fails: the confusion matrix and the most confidently wrong test digits.

    python scripts/plot_errors.py runs/20261129-223500                     # -> RUN_DIR/{confusion,mistakes}.svg
    python scripts/plot_errors.py runs/20261129-223500 --out-dir figures

Also prints the per-class test accuracy. With the notebook's settings expect about 170 errors
(accuracy ~0.983); the commonest are a 7 read as 2 and a 9 read as 4.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_jax.cli import fail, positive


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a run directory written by scripts/train.py")
    p.add_argument("--out-dir", type=Path, default=None, help="where to write the figures (default: RUN_DIR)")
    p.add_argument("--rows", type=positive(int), default=3, help="rows of mistakes shown (default: %(default)s)")
    p.add_argument("--cols", type=positive(int), default=6, help="columns of mistakes shown (default: %(default)s)")
    p.add_argument("--data-dir", default=None, help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    args = p.parse_args(argv)

    import jax
    import numpy as np
    import tensorflow_datasets as tfds

    from mnist_jax import data, plotting, runs
    from mnist_jax.model import Classifier
    from mnist_jax.train import class_accuracy, probabilities

    tfds.display_progress_bar(False)
    out_dir = args.out_dir or args.run_dir
    try:
        config, _, params = runs.load_run(args.run_dir)
        images, labels = data.load("test", args.data_dir)
        probs = np.asarray(jax.jit(probabilities, static_argnames=("model", "batch_size"))(
            params, images, model=Classifier(conv=config.conv), batch_size=config.test_batch_size))
        confusion = np.zeros((10, 10), np.int64)
        np.add.at(confusion, (labels, probs.argmax(1)), 1)
        out_dir.mkdir(parents=True, exist_ok=True)
        plotting.save_figure(plotting.plot_confusion_matrix(confusion), out_dir / "confusion.svg")
        plotting.save_figure(plotting.plot_confident_mistakes(images, labels, probs, size=(args.rows, args.cols)),
                             out_dir / "mistakes.svg")
    except (runs.RunError, data.DataError) as e:
        fail(str(e))
    except OSError as e:
        fail(f"{e.filename}: cannot write ({e.strerror})")
    accuracy = class_accuracy(confusion)
    print("per-class test accuracy: " + "  ".join(f"{c}: {a:.4f}" for c, a in enumerate(accuracy)))
    print(f"{int(confusion.sum() - np.trace(confusion))} errors in {len(labels)}. "
          f"Wrote {out_dir}/confusion.svg and {out_dir}/mistakes.svg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
