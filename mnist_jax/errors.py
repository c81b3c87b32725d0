"""The one base class of every mistake a user can make: a bad flag value, file, run directory or image.

Each module raises its own subclass (`DataError`, `RunError`, `CheckpointError`, `ImageError`,
`ConfigError`) with a one-line message that names what is wrong. The command line turns any
`UserError` into `PROG: error: MESSAGE` and exit status 2, in one place (`mnist_jax.cli`); anything
else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A mistake in the user's input; `str(error)` is one line that says what to fix."""


class ConfigError(UserError, ValueError):
    """A training setting that cannot work (or may not change on resume)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint is missing, damaged, does not fit the model, or cannot be written; one line.
    (Raised by mnist_jax.checkpoints; defined here so that the command line can tell it apart
    without importing Orbax.)"""
