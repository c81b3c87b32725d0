"""Time to the notebook's accuracy (0.9836) and to 99%, side by side in one run: mnist-jax's `fast`
and `one_epoch` recipes, PyTorch training the fast recipe with the data in memory (its strongest CPU form here),
and the notebook's own PyTorch code, each a fresh process timed from its start, seed by seed.

    python benchmarks/time_to_accuracy.py                         # seeds 0-2, each way
    python benchmarks/time_to_accuracy.py --seeds 1 --json tta.json

The recipe (mnist_jax/recipes.py, `fast`): the notebook's network, batch 64, Adam with a one-cycle
schedule up to 3e-3 over 3 epochs (Optax's `cosine_onecycle_schedule` and PyTorch's `OneCycleLR`
have the same defaults: 30% rise, from peak/25, down to peak/25e4), each training digit shifted by
up to 2 pixels. The times are those of the epoch lines as the process printed them, from the
process's start: imports, data, compiling and training included. The notebook's code needs
torchvision (`pip install -e ".[torch]"`); without it that row says so. Expect on 2 AMD EPYC
(Zen) cores (docs/measurements.md): mnist-jax past 0.9836 after its first epoch, about 25 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGETS = (0.9836, 0.99)
EPOCHS, BATCH, PEAK, SHIFT = 3, 64, 3e-3, 2  # the fast recipe's


def timed_lines(cmd: list[str]) -> list[tuple[float, float]]:
    """(seconds from the start, test accuracy) of each epoch line the command prints."""
    start = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    epochs = []
    for line in process.stdout:
        if line.startswith("[epoch"):
            epochs.append((time.perf_counter() - start, float(line.rsplit("accuracy: ", 1)[1].split()[0])))
    if process.wait() != 0:
        raise SystemExit(f"{' '.join(cmd[:3])} failed:\n{process.stderr.read()[-2000:]}")
    return epochs


def first_past(epochs: list[tuple[float, float]], target: float) -> float | None:
    return next((t for t, accuracy in epochs if accuracy >= target), None)


def torch_recipe(seed: int, data_dir: str | None) -> None:
    """The fast recipe in PyTorch, the data in memory, printing the notebook's epoch line."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from torch_notebook import Classifier

    from mnist_jax import data

    torch.manual_seed(seed)
    (x_train, y_train), (x_test, y_test) = (data.load(split, data_dir) for split in ("train", "test"))
    x_train = torch.from_numpy(np.asarray(x_train, np.float32) / 255).permute(0, 3, 1, 2).contiguous()
    x_test = torch.from_numpy(np.asarray(x_test, np.float32) / 255).permute(0, 3, 1, 2).contiguous()
    y_train, y_test = torch.from_numpy(np.asarray(y_train, np.int64)), torch.from_numpy(np.asarray(y_test, np.int64))
    model = Classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=PEAK)
    steps = -(-len(y_train) // BATCH)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, PEAK, total_steps=EPOCHS * steps)
    rows = torch.arange(28).view(1, 28, 1)
    for epoch in range(EPOCHS):
        model.train()
        order = torch.randperm(len(y_train))
        for i in range(0, len(order), BATCH):
            idx = order[i:i + BATCH]
            images = F.pad(x_train[idx], (SHIFT,) * 4)
            dy, dx = (torch.randint(0, 2 * SHIFT + 1, (len(idx), 1, 1)) for _ in range(2))
            images = images[torch.arange(len(idx)).view(-1, 1, 1), 0, rows + dy, rows.transpose(1, 2) + dx]
            loss = F.cross_entropy(model(images.unsqueeze(1)), y_train[idx])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
        model.eval()
        with torch.no_grad():
            correct = sum(int((model(x_test[i:i + 1024]).argmax(1) == y_test[i:i + 1024]).sum())
                          for i in range(0, len(y_test), 1024))
        print(f"[epoch {epoch:2d}] Test accuracy: {correct / len(y_test):.4f}", flush=True)


def main(argv: list[str] | None = None, tmp: str = ".") -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--notebook-epochs", type=int, default=2, help="epochs of the notebook's code (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--torch-recipe-child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.torch_recipe_child is not None:
        return torch_recipe(args.torch_recipe_child, args.data_dir)
    data_flags = ["--data-dir", args.data_dir] if args.data_dir else []
    def mnist_jax(recipe: str):
        return lambda seed: [sys.executable, str(ROOT / "scripts" / "train.py"), "--recipe", recipe, "--seed", str(seed),
                             "--progress", "off", "--no-tensorboard", "--run-dir", str(Path(tmp) / f"{recipe}-{seed}"),
                             *data_flags]

    ways = {"mnist-jax, --recipe fast": mnist_jax("fast"), "mnist-jax, --recipe one_epoch": mnist_jax("one_epoch")}
    try:
        import torch  # noqa: F401
        ways["PyTorch, the same recipe, data in memory"] = lambda seed: [
            sys.executable, __file__, "--torch-recipe-child", str(seed), *data_flags]
    except ImportError:
        print("PyTorch is not installed: its rows are left out (pip install -e '.[torch]')", file=sys.stderr)
    try:
        import torchvision  # noqa: F401
        ways["PyTorch, the notebook's code (batch 512, Adam 1e-4)"] = lambda seed: [
            sys.executable, str(ROOT / "benchmarks" / "torch_notebook.py"), "--epochs", str(args.notebook_epochs)]
    except Exception as e:  # ImportError, or a torchvision built for another torch
        print(f"the notebook's code needs torchvision, which does not import here ({type(e).__name__}): "
              f"its row is left out", file=sys.stderr)
    results = {}
    for name, command in ways.items():
        runs = [timed_lines(command(seed)) for seed in range(args.seeds)]
        results[name] = runs
    print(f"| way ({args.seeds} seeds) | to {TARGETS[0]} | to {TARGETS[1]:.0%} | first epoch's line | final test accuracy |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        cells = []
        for target in TARGETS:
            times = [first_past(run, target) for run in runs]
            reached = [t for t in times if t is not None]
            cells.append(f"{statistics.median(reached):.1f} s ({len(reached)}/{len(runs)} seeds)" if reached
                         else f"not within {len(runs[0])} epochs")
        first = statistics.median(run[0][0] for run in runs)
        finals = ", ".join(f"{run[-1][1]:.4f}" for run in runs)
        print(f"| {name} | {cells[0]} | {cells[1]} | {first:.1f} s | {finals} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    import tempfile

    sys.path.insert(0, str(ROOT / "benchmarks"))
    with tempfile.TemporaryDirectory() as tmp_dir:
        main(tmp=tmp_dir)
