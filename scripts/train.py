"""Train the notebook's CNN on MNIST and reproduce its log and figures (`mnist-jax train`).

    python scripts/train.py                      # the notebook: 30 epochs, Adam 1e-4, batch 512
    python scripts/train.py --epochs 3 --run-dir runs/quick
    python scripts/train.py --seeds 8            # 8 models in one program, mean +- std per epoch
    python scripts/train.py --resume runs/quick --epochs 5
    python scripts/train.py --figures-dir figures   # also refresh the committed figures

Prints the model summary, then one line per epoch in the notebook's format, e.g.
    [epoch  0] Train loss: 1.8407 / accuracy: 0.6246 | Test loss: 1.0855 / accuracy: 0.8155
and ends near the notebook's `Test loss: 0.0504 / accuracy: 0.9836`: on a 2-core CPU, about 9
minutes for `[epoch 29] ... Test loss: 0.0534 / accuracy: 0.9830`. Writes history.json, checkpoints/,
params.msgpack, training.svg and classification.svg into the run directory (default
runs/<date>-<time> under the current directory). `--help` lists every flag.
"""

import sys

from mnist_jax.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("train"))
