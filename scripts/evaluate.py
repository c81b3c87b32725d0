"""Report the test loss and accuracy of a saved run.

    python scripts/evaluate.py runs/20261129-223500
    # Test loss: 0.0534 / accuracy: 0.9830 (10000 test examples, params after epoch 29)

Uses the run's final params, or for an unfinished (interrupted) run its latest checkpoint.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_jax.cli import fail, positive


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path, help="a run directory written by scripts/train.py")
    p.add_argument("--batch-size", type=positive(int), default=None, help="evaluation batch (default: the run's)")
    p.add_argument("--data-dir", default=None, help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    args = p.parse_args(argv)

    import functools

    import jax
    import tensorflow_datasets as tfds

    from mnist_jax import data, runs
    from mnist_jax.model import Classifier
    from mnist_jax.train import evaluate

    tfds.display_progress_bar(False)
    try:
        config, history, params = runs.load_run(args.run_dir)
        images, labels = data.load("test", args.data_dir)
    except (runs.RunError, data.DataError) as e:
        fail(str(e))
    run_eval = jax.jit(functools.partial(evaluate, model=Classifier(conv=config.conv),
                                         batch_size=args.batch_size or config.test_batch_size))
    metrics = jax.device_get(run_eval(params, images, labels))
    print(f"Test loss: {metrics['loss']:.4f} / accuracy: {metrics['accuracy']:.4f} "
          f"({len(labels)} test examples, params after epoch {len(history['train_loss']) - 1})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
