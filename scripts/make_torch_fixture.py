"""Write tests/fixtures/torch_parity.npz: a seeded notebook PyTorch model, MNIST inputs, its logits.

Needs torch (mnist_jax never imports it; the model is benchmarks/torch_notebook.py's), run once:

    pip install -e ".[torch]" && python scripts/make_torch_fixture.py

The fixture holds the `state_dict` arrays under their PyTorch names, 16 test images (uint8, NCHW)
and the PyTorch logits; tests/test_torch_params.py checks `params_from_torch` reproduces them within 1e-5.
"""

from __future__ import annotations

import argparse
import gzip
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "torch_parity.npz")
    p.add_argument("--examples", type=int, default=16)
    args = p.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import torch
        from torch_notebook import Classifier
    except ImportError:
        print(f"{Path(sys.argv[0]).name}: error: needs torch; install it with: pip install -e \".[torch]\"",
              file=sys.stderr)
        return 2

    torch.manual_seed(0)
    model = Classifier().eval()
    raw = gzip.decompress((ROOT / "mnist_jax" / "mnist" / "t10k-images-idx3-ubyte.gz").read_bytes())
    images = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 1, 28, 28)[: args.examples].copy()
    with torch.no_grad():
        logits = model(torch.from_numpy(images).float() / 255.0).numpy()
    state = {name: t.numpy() for name, t in model.state_dict().items()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, images_nchw=images, logits=logits, **state)
    print(f"wrote {args.out}: {len(images)} images, torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
