"""What the commands share: exit statuses, one-line errors and output, JAX's settings, the saved run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mnist_jax import run  # its modules import on first use
from mnist_jax.errors import one_line

EXIT_USER_ERROR = 2  # argparse uses 2 for bad flags too
EXIT_DIVERGED = 3
ERROR_LIMIT = 5000  # characters in an error line: room for a path of 4,096 bytes and what is wrong with it


class Parser(argparse.ArgumentParser):
    """argparse, with a mistake said in one line and a pointer to --help instead of the usage."""

    def error(self, message: str):
        line = one_line(f"{self.prog}: error: {message} (see {self.prog} --help)", ERROR_LIMIT)
        self.exit(EXIT_USER_ERROR, line + "\n")


def say(text: str, file=None) -> None:
    """Print one line: a name from the file system may hold newlines or bytes that are not UTF-8
    (errors.one_line), and an error past a path's 4,096 bytes is cut."""
    print(one_line(text, limit=ERROR_LIMIT if file is sys.stderr else None), file=file or sys.stdout)


def configure(args: argparse.Namespace, distributed=None) -> None:
    """JAX's settings for a command: the compilation cache its flags name, and multi-host."""
    cache = None if args.no_compile_cache else (args.compile_cache or run.environment.default_compile_cache())
    run.environment.configure(compile_cache=cache, distributed=distributed)


def run_dir(args: argparse.Namespace) -> Path:
    """The run a command reads: RUN_DIR, or the weights bundled in the package."""
    return args.run_dir or run.rundir.BUNDLED_RUN
