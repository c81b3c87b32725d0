"""Time using the model (`mnist-jax benchmark-use`): predict one image end to end, and the demo.

    python scripts/benchmark_use.py --repeat 5 --json use.json

`mnist-jax predict one.png` runs in a child process, first with an empty compilation cache, then
`--repeat` times warm; the demo is served on a free port and answers 4 x `--repeat` drawn digits
through gradio_client (needs the demo extra). Targets: predict <= 3 s warm, the demo <= 100 ms.
"""

import sys

from mnist_jax.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("benchmark-use"))
