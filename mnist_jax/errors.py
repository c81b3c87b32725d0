"""The one base class of every mistake a user can make: a bad flag value, file, run directory or image.

Each module raises its own subclass (`DataError`, `RunError`, `CheckpointError`, `ImageError`,
`ConfigError`, `PathError`) with a one-line message that names what is wrong. The command line turns any
`UserError` into `PROG: error: MESSAGE` and exit status 2, in one place (`mnist_jax.cli`); anything
else is a bug and keeps its traceback. `one_line` and `quoted` keep those messages one short line.
"""

import math
from typing import Any


class UserError(Exception):
    """A mistake in the user's input; `str(error)` is one line that says what to fix."""


class ConfigError(UserError, ValueError):
    """A training setting that cannot work (or may not change on resume)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, damaged, does not fit the model, or cannot be written; one line.
    (Raised by mnist_jax.run.checkpoints; defined here so that the command line can tell it apart
    without importing Orbax.)"""


class PathError(UserError, ValueError):
    """A path given that cannot be used as asked: a name longer than the file system allows, or an
    output that would replace the run it is made from or files that it did not write."""


def quoted(value: Any, limit: int = 60) -> str:
    """`value`, from a hand-edited file, as a message quotes it: its repr, cut past `limit` characters."""
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python converts to text
        return "an integer of thousands of digits"
    return text if len(text) <= limit else f"{text[:limit - 10]}... ({len(text):,} characters)"


def finite(number: int | float) -> bool:
    """Whether `number` is a finite float or an int that a float can hold."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def one_line(text: str, limit: int | None = None) -> str:
    """`text` as one printable line for a terminal: a file name's bytes that are not UTF-8 as \\xNN,
    control characters (a newline in a name) escaped, and a text over `limit` characters cut in the
    middle, keeping the end, which says what to do."""
    text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    if limit is not None and len(text) > limit:
        head, tail = limit - 140, 100
        text = f"{text[:head]} ... ({len(text) - head - tail:,} characters left out) ... {text[-tail:]}"
    return text
