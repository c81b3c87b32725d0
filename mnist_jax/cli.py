"""Small pieces shared by the scripts: argument types and the one-line error exit."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from collections.abc import Callable
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
