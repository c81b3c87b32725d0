"""A drawing pad in the browser: draw a digit and watch the model read it (`mnist-jax demo`).

    pip install -e ".[demo]"
    python scripts/demo.py                      # prints: The drawing pad is at http://127.0.0.1:7860 ...
    python scripts/demo.py --run runs/20261129-223500 --port 8000 --host 0.0.0.0

Uses the weights bundled in the package unless given a run. The pad, an upload box, the 28x28 image
the model sees and the ten class probabilities as bars, updated after every stroke.
"""

import sys

from mnist_jax.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("demo"))
