"""The original notebook's PyTorch code: its model verbatim, and its training loop as the benchmark
times it (needs torch and torchvision: `pip install -e ".[torch]"`). Nothing in mnist_jax imports it.

    from torch_notebook import Classifier, train_epochs     # from benchmarks/, as the scripts here do
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
    """The notebook's code as written, and the same model with the data on the device."""
    import torch
    from torch import optim
    from torch.nn import functional as F
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    device = "cuda" if torch.cuda.is_available() else "cpu"

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def epoch_loop(train_batches, test_batches, n_test):
        torch.manual_seed(0)
        model = Classifier().to(device)
        optimizer = optim.Adam(model.parameters(), lr=1e-4)
        times, acc = [], 0.0
        for _ in range(epochs):
            sync()
            start = time.perf_counter()
            model.train()
            for x, y in train_batches():
                x, y = x.to(device), y.to(device)
                outputs = model(x)
                optimizer.zero_grad()
                loss = F.cross_entropy(outputs, y)
                loss.backward()
                optimizer.step()
                loss.item()  # the notebook syncs on every batch
            model.eval()
            correct = 0
            with torch.no_grad():
                for x, y in test_batches():
                    x, y = x.to(device), y.to(device)
                    correct += y.eq(model(x).argmax(dim=1)).sum().item()
            sync()
            times.append(time.perf_counter() - start)
            acc = correct / n_test
        return {"median_epoch_seconds": statistics.median(times), "epoch_seconds": times, "last_test_accuracy": acc}

    train_ds = datasets.MNIST(root=root, train=True, download=False, transform=transforms.ToTensor())
    test_ds = datasets.MNIST(root=root, train=False, download=False, transform=transforms.ToTensor())
    pin = device == "cuda"
    notebook = epoch_loop(lambda: DataLoader(train_ds, batch_size=512, shuffle=True, pin_memory=pin),
                          lambda: DataLoader(test_ds, batch_size=1024, shuffle=False, pin_memory=pin), len(test_ds))

    x_train = (train_ds.data.float() / 255.0).unsqueeze(1).to(device)
    y_train = train_ds.targets.to(device)
    x_test = (test_ds.data.float() / 255.0).unsqueeze(1).to(device)
    y_test = test_ds.targets.to(device)

    def on_device_train():
        order = torch.randperm(len(y_train), device=device)
        for i in range(0, len(order), 512):
            idx = order[i : i + 512]
            yield x_train[idx], y_train[idx]

    def on_device_test():
        for i in range(0, len(y_test), 1024):
            yield x_test[i : i + 1024], y_test[i : i + 1024]

    on_device = epoch_loop(on_device_train, on_device_test, len(y_test))
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    return {"torch": torch.__version__, "device": name, "threads": torch.get_num_threads(),
            "notebook": notebook, "data_on_device": on_device}
