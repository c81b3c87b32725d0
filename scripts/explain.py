"""Why the model read each picture as it did (`mnist-jax explain`): a figure per picture.

    python scripts/explain.py my_seven.png scans/              # the bundled weights
    # my_seven.png: 7 (0.9967)  2 (0.0021)  -> explanations/my_seven-explained.svg
    python scripts/explain.py my_seven.png --run runs/20261129-223500 --top 3 --out-dir why

Each figure shows the 28x28 input the model saw and, for its top classes, each pixel's integrated
gradient from the blank digit: red is evidence for the class, blue against it (mnist_jax/apps/explain.py).
The attributions add up to the class's logit gain within 1% at the default 64 steps; erasing the
tenth of a test digit's stroke they rank highest lowers its class's logit about 5 times more than
erasing a random tenth (tests/test_explain.py). One picture takes about 0.2 s once compiled.
"""

import sys

from mnist_jax.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("explain"))
