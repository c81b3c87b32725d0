"""Time to the notebook's accuracy (0.9836) and to 99%, side by side in one run: mnist-jax's `fast`
and `one_epoch` recipes, PyTorch training the fast recipe with the data in memory (its strongest CPU
form here), and the notebook's own PyTorch code, each a fresh process timed from its start.

    python benchmarks/time_to_accuracy.py                         # seeds 0-2, each way
    python benchmarks/time_to_accuracy.py --seeds 1 --json tta.json

The rounds alternate between the ways (seed 0 of each, then seed 1 of each, ...), so that a machine
that slows down slows them alike, and each time is also given as a share of the notebook's first
epoch in the same run. The times are those of the epoch lines as the process printed them, from the
process's start: imports, data, compiling and training included. mnist-jax runs as a user's second
run does (the data prepared, the compilation cache warm); its first run, with the cache empty, is
reported apart ("cold"). The PyTorch rows need `pip install -e ".[torch]"`; without it they say so.
Expect on 2 AMD EPYC (Zen 4) cores (docs/measurements.md): `one_epoch` past 0.9836 in about 0.5 of
the notebook's first epoch, `fast` past 99% in about 0.9 of it.
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
NOTEBOOK = "PyTorch, the notebook's code (batch 512, Adam 1e-4)"


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

    from mnist_jax import data, recipes

    fast = recipes.config("fast")
    epochs, batch, peak, shift = fast.epochs, fast.batch_size, fast.learning_rate, fast.augment_shift
    torch.manual_seed(seed)
    (x_train, y_train), (x_test, y_test) = (data.load(split, data_dir) for split in ("train", "test"))
    x_train = torch.from_numpy(np.asarray(x_train, np.float32) / 255).permute(0, 3, 1, 2).contiguous()
    x_test = torch.from_numpy(np.asarray(x_test, np.float32) / 255).permute(0, 3, 1, 2).contiguous()
    y_train, y_test = torch.from_numpy(np.asarray(y_train, np.int64)), torch.from_numpy(np.asarray(y_test, np.int64))
    model = Classifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=peak)
    steps = -(-len(y_train) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, peak, total_steps=epochs * steps)
    rows = torch.arange(28).view(1, 28, 1)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(y_train))
        for i in range(0, len(order), batch):
            idx = order[i:i + batch]
            images = F.pad(x_train[idx], (shift,) * 4)
            dy, dx = (torch.randint(0, 2 * shift + 1, (len(idx), 1, 1)) for _ in range(2))
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
    p.add_argument("--notebook-epochs", type=int, default=1, help="epochs of the notebook's code (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--torch-recipe-child", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.torch_recipe_child is not None:
        return torch_recipe(args.torch_recipe_child, args.data_dir)
    data_flags = ["--data-dir", args.data_dir] if args.data_dir else []
    cache = ["--compile-cache", str(Path(tmp) / "compile-cache")]  # empty until the cold runs fill it

    def mnist_jax(recipe: str):
        return lambda seed: [sys.executable, str(ROOT / "scripts" / "train.py"), "--recipe", recipe, "--seed", str(seed),
                             "--progress", "off", "--no-tensorboard", "--run-dir", str(Path(tmp) / f"{recipe}-{seed}"),
                             "--overwrite", *cache, *data_flags]

    ways = {"mnist-jax, --recipe fast": mnist_jax("fast"), "mnist-jax, --recipe one_epoch": mnist_jax("one_epoch")}
    try:
        import torch  # noqa: F401
        ways["PyTorch, the fast recipe, data in memory"] = lambda seed: [
            sys.executable, __file__, "--torch-recipe-child", str(seed), *data_flags]
    except ImportError:
        print("PyTorch is not installed: its rows are left out (pip install -e '.[torch]')", file=sys.stderr)
    try:
        import torchvision  # noqa: F401
        ways[NOTEBOOK] = lambda seed: [sys.executable, str(ROOT / "benchmarks" / "torch_notebook.py"),
                                       "--epochs", str(args.notebook_epochs)]
    except Exception as e:  # ImportError, or a torchvision built for another torch
        print(f"the notebook's code needs torchvision, which does not import here ({type(e).__name__}): "
              f"its row is left out", file=sys.stderr)
    # The cold runs: seed 0 of each recipe with the compilation cache empty (the first fills it).
    cold = {}
    for name in [n for n in ways if n.startswith("mnist-jax")]:
        cold[f"{name}, cold (seed 0, its first run)"] = [timed_lines(ways[name](0))]
    results = {name: [] for name in ways}
    for seed in range(args.seeds):
        for name, command in ways.items():
            results[name].append(timed_lines(command(seed)))
    results.update(cold)
    notebook_epoch = statistics.median(run[0][0] for run in results[NOTEBOOK]) if NOTEBOOK in results else None
    share = (lambda t: f" = {t / notebook_epoch:.2f}") if notebook_epoch else (lambda t: "")
    print(f"| way ({args.seeds} seeds) | to {TARGETS[0]} (median; share of the notebook's first epoch) | "
          f"to {TARGETS[1]:.0%} (median; slowest seed) | first epoch's line | final test accuracy |")
    print("|---|---|---|---|---|")
    for name, runs in results.items():
        cells = []
        for target in TARGETS:
            times = [first_past(run, target) for run in runs]
            reached = [t for t in times if t is not None]
            if len(reached) < len(runs):
                cells.append(f"{len(reached)} of {len(runs)} runs within {len(runs[0])} epochs")
            else:
                cells.append(f"{statistics.median(reached):.1f} s{share(statistics.median(reached))}; "
                             f"{max(reached):.1f} s{share(max(reached))}")
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
