"""Small pieces shared by the scripts: argument types, the one-line error exit, progress and stopping."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

EXIT_USER_ERROR = 2  # argparse uses 2 for bad flags too
EXIT_DIVERGED = 3  # the loss became NaN or infinite


def positive(kind: type) -> Callable[[str], int | float]:
    """argparse type: a number of `kind` that is > 0."""
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}") from None
        if not value > 0 or value != value or value == float("inf"):
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        return value

    parse.__name__ = f"positive {kind.__name__}"
    return parse


def fail(message: str) -> NoReturn:
    """Print `PROG: error: message` on one line to stderr, as argparse does, and exit with code 2."""
    print(f"{Path(sys.argv[0]).name}: error: {message}", file=sys.stderr)
    sys.exit(EXIT_USER_ERROR)


class EpochProgress:
    """A tqdm bar per epoch, fed from inside the jitted scan; it clears itself when the epoch ends,
    so the terminal keeps only the notebook's lines."""

    def __init__(self, batches_per_epoch: int, first_epoch: int = 0):
        self.total = batches_per_epoch
        self.epoch = first_epoch
        self.bar = None

    def __call__(self, batch_index) -> None:
        from tqdm import tqdm

        i = int(batch_index)
        if i == 0:
            self.bar = tqdm(total=self.total, desc=f"epoch {self.epoch:2d}", unit="batch", leave=False,
                            file=sys.stderr, dynamic_ncols=True)
        if self.bar is not None:
            self.bar.update(1)
            if i == self.total - 1:
                self.bar.close()
                self.bar, self.epoch = None, self.epoch + 1


class StopRequest:
    """SIGINT/SIGTERM ask training to stop at the end of the current epoch; a second Ctrl-C stops now."""

    def __init__(self):
        self.signal: int | None = None

    def __call__(self, signum: int, frame) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        print(f"\n{signal.Signals(signum).name}: stopping after this epoch (Ctrl-C again to stop now)",
              file=sys.stderr, flush=True)
