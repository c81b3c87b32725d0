"""Time the data pipeline: first preparation, then loading both splits (`mnist-jax benchmark-data`).

    python scripts/benchmark_data.py --repeat 3

Expect on 2 CPU cores: preparation ~3.5 s, loading both splits ~0.6 s.
"""

import sys

from mnist_jax.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("benchmark-data"))
