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
    error = file is sys.stderr
    print(one_line(text, limit=ERROR_LIMIT if error else None), file=sys.stdout if file is None else file)


def configure(args: argparse.Namespace, distributed=None) -> None:
    """JAX's settings for a command: the compilation cache its flags name, and multi-host."""
    cache = None if args.no_compile_cache else (args.compile_cache or run.environment.default_compile_cache())
    run.environment.configure(compile_cache=cache, distributed=distributed)


def run_dir(args: argparse.Namespace) -> Path:
    """The run a command reads: RUN_DIR, or the weights bundled in the package."""
    return args.run_dir or run.rundir.BUNDLED_RUN


def load(args: argparse.Namespace):
    """The run a command reads: (config, history, params)."""
    return run.rundir.load_run(run_dir(args))


def load_record(args: argparse.Namespace):
    """The run a command reads with its history.json's whole record (its "unsure" threshold): (record, params)."""
    return run.rundir.load_record_and_params(run_dir(args))


def model_and_names(config):
    """The model of a run's `config` and its dataset's class names."""
    from mnist_jax.data.datasets import DATASETS
    from mnist_jax.fast import model_for

    return model_for(config), DATASETS[config.dataset].class_names


def params_phrase(history) -> str:
    """Which params a run holds, for a line that reports them."""
    done = len(history["train_loss"])
    return f"params after epoch {done - 1}" if done else "params before any training (the history has no epoch)"
