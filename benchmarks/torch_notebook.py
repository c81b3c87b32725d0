"""The original notebook's PyTorch code: its model verbatim, its training loop run end to end, and
the variants of it that the benchmark times (needs torch and torchvision: `pip install -e ".[torch]"`).
Nothing in mnist_jax imports it.

    python benchmarks/torch_notebook.py --epochs 3     # the notebook's code, as a user runs it
    from torch_notebook import Classifier, benchmarks  # from benchmarks/, as the scripts here do
"""

from __future__ import annotations

import gzip
import statistics
import time
from pathlib import Path

from torch import nn


class Classifier(nn.Module):
    """The notebook's model, verbatim."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels=1, out_channels=32, kernel_size=3)
        self.relu1 = nn.ReLU()
        self.maxpool1 = nn.MaxPool2d(kernel_size=2)
        self.conv2 = nn.Conv2d(in_channels=32, out_channels=64, kernel_size=3)
        self.relu2 = nn.ReLU()
        self.maxpool2 = nn.MaxPool2d(kernel_size=2)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(in_features=1600, out_features=10)

    def forward(self, x):
        x = self.maxpool1(self.relu1(self.conv1(x)))
        x = self.maxpool2(self.relu2(self.conv2(x)))
        x = self.flatten(x)
        x = self.linear(x)
        return x


def torchvision_root(directory: Path) -> Path:
    """The bundled IDX files laid out as torchvision's MNIST expects them, so nothing is downloaded."""
    from mnist_jax.data import BUNDLED_DIR

    raw = directory / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for gz in BUNDLED_DIR.glob("*.gz"):
        (raw / gz.name.removesuffix(".gz")).write_bytes(gzip.decompress(gz.read_bytes()))
    return directory


def benchmarks(epochs: int, root: Path) -> dict:
    """Each PyTorch variant a user might run, `epochs` epochs each in this process: the notebook's
    code as written (DataLoader + ToTensor), the same model with the dataset in memory (no
    DataLoader), the same in channels-last memory format, and that compiled with `torch.compile`
    (inductor). Per variant: the median epoch (train + test) and train step, and the last accuracy."""
    import torch
    from torch import optim
    from torch.nn import functional as F
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    device = "cuda" if torch.cuda.is_available() else "cpu"

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def epoch_loop(model, train_batches, test_batches, n_test):
        optimizer = optim.Adam(model.parameters(), lr=1e-4)
        epoch_times, step_times, acc = [], [], 0.0
        for _ in range(epochs):
            sync()
            start = time.perf_counter()
            model.train()
            steps = 0
            for x, y in train_batches():
                x, y = x.to(device), y.to(device)
                outputs = model(x)
                optimizer.zero_grad()
                loss = F.cross_entropy(outputs, y)
                loss.backward()
                optimizer.step()
                loss.item()  # the notebook syncs on every batch
                steps += 1
            sync()
            step_times.append((time.perf_counter() - start) / steps)
            model.eval()
            correct = 0
            with torch.no_grad():
                for x, y in test_batches():
                    x, y = x.to(device), y.to(device)
                    correct += y.eq(model(x).argmax(dim=1)).sum().item()
            sync()
            epoch_times.append(time.perf_counter() - start)
            acc = correct / n_test
        return {"median_epoch_seconds": statistics.median(epoch_times), "epoch_seconds": epoch_times,
                "median_step_seconds": statistics.median(step_times), "last_test_accuracy": acc}

    def model(channels_last: bool = False, compiled: bool = False):
        torch.manual_seed(0)
        m = Classifier().to(device)
        if channels_last:
            m = m.to(memory_format=torch.channels_last)
        return torch.compile(m) if compiled else m

    train_ds = datasets.MNIST(root=root, train=True, download=False, transform=transforms.ToTensor())
    test_ds = datasets.MNIST(root=root, train=False, download=False, transform=transforms.ToTensor())
    pin = device == "cuda"
    rows = {"notebook": epoch_loop(model(), lambda: DataLoader(train_ds, batch_size=512, shuffle=True, pin_memory=pin),
                                   lambda: DataLoader(test_ds, batch_size=1024, shuffle=False, pin_memory=pin),
                                   len(test_ds))}

    def in_memory(channels_last: bool):
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        x_train = (train_ds.data.float() / 255.0).unsqueeze(1).to(device).contiguous(memory_format=fmt)
        y_train = train_ds.targets.to(device)
        x_test = (test_ds.data.float() / 255.0).unsqueeze(1).to(device).contiguous(memory_format=fmt)
        y_test = test_ds.targets.to(device)

        def train_batches():
            order = torch.randperm(len(y_train), device=device)
            for i in range(0, len(order), 512):
                idx = order[i : i + 512]
                yield x_train[idx].contiguous(memory_format=fmt), y_train[idx]

        def test_batches():
            for i in range(0, len(y_test), 1024):
                yield x_test[i : i + 1024], y_test[i : i + 1024]

        return train_batches, test_batches, len(y_test)

    rows["data_in_memory"] = epoch_loop(model(), *in_memory(False))
    rows["channels_last"] = epoch_loop(model(channels_last=True), *in_memory(True))
    rows["compiled_channels_last"] = epoch_loop(model(channels_last=True, compiled=True), *in_memory(True))
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return {"torch": torch.__version__, "device": name, "threads": torch.get_num_threads(), **rows}


LABELS = {"notebook": "PyTorch, the notebook's code (DataLoader + ToTensor)",
          "data_in_memory": "PyTorch, the dataset in memory (no DataLoader)",
          "channels_last": "PyTorch, in memory, channels-last",
          "compiled_channels_last": "PyTorch, in memory, channels-last, torch.compile (inductor)"}


def main() -> int:
    """The notebook's code end to end, as a user runs it: imports, data, `--epochs` epochs, its lines
    (on the GPU when there is one; the notebook names "cuda")."""
    import argparse
    import tempfile

    import torch
    from torch import optim
    from torch.nn import functional as F
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    p = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30, help="(default: %(default)s, the notebook's)")
    args = p.parse_args()
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    pin = device == "cuda"

    def train(model, optimizer, train_loader):
        model.train()
        train_loss = train_corrects = 0
        for x, y in train_loader:
            inputs, labels = x.to(device), y.to(device)
            outputs = model(inputs)
            optimizer.zero_grad()
            loss = F.cross_entropy(outputs, labels)
            loss.backward()
            optimizer.step()
            train_loss += loss.item() * len(x)
            train_corrects += labels.eq(outputs.argmax(dim=1)).sum().item()
        return train_loss / len(train_loader.dataset), train_corrects / len(train_loader.dataset)

    def test(model, test_loader):
        model.eval()
        test_loss = test_corrects = 0
        with torch.no_grad():
            for x, y in test_loader:
                inputs, labels = x.to(device), y.to(device)
                outputs = model(inputs)
                test_loss += F.cross_entropy(outputs, labels).item() * len(x)
                test_corrects += labels.eq(outputs.argmax(dim=1)).sum().item()
        return test_loss / len(test_loader.dataset), test_corrects / len(test_loader.dataset)

    with tempfile.TemporaryDirectory() as tmp:
        root = torchvision_root(Path(tmp))
        train_dataset = datasets.MNIST(root=root, train=True, download=False, transform=transforms.ToTensor())
        train_loader = DataLoader(train_dataset, batch_size=512, shuffle=True, pin_memory=pin)
        test_dataset = datasets.MNIST(root=root, train=False, download=False, transform=transforms.ToTensor())
        test_loader = DataLoader(test_dataset, batch_size=1024, shuffle=False, pin_memory=pin)
        model = Classifier().to(device)
        optimizer = optim.Adam(model.parameters(), lr=1e-4)
        for epoch in range(args.epochs):
            train_loss, train_acc = train(model, optimizer, train_loader)
            test_loss, test_acc = test(model, test_loader)
            print(f"[epoch {epoch:2d}] Train loss: {train_loss:.4f} / accuracy: {train_acc:.4f} | "
                  f"Test loss: {test_loss:.4f} / accuracy: {test_acc:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
