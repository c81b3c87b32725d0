"""Save a trained classifier as one file (`mnist-jax export`): JAX alone, or onnxruntime, runs it.

    python scripts/export.py --out classifier.jaxexport            # the weights bundled in the package
    # Wrote classifier.jaxexport (146 kB): uint8 images (N, 28, 28, 1) to (N, 10) float32 probabilities, ...
    python scripts/export.py runs/20261129-223500 --out demo.onnx  # a run of your own, as ONNX (the onnx extra)
"""

import sys

from mnist_jax.cli import script_main

if __name__ == "__main__":
    sys.exit(script_main("export"))
