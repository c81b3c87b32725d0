"""Benchmark mnist-jax against the notebook's PyTorch code on this machine (`mnist-jax benchmark`).

    python scripts/benchmark.py                          # 30 jax epochs, 3 epochs of each torch variant
    python scripts/benchmark.py --epochs 3 --skip-torch --json bench.json
    python scripts/benchmark.py --seeds 8 --skip-torch   # also 8 seeds at once

The PyTorch rows need `pip install -e ".[torch]"`. Expect on 2 CPU cores: mnist-jax ~17 s per
epoch, the notebook ~20-26 s. What is measured: see mnist_jax/benchmark.py.
"""

import sys

from mnist_jax.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("benchmark"))
