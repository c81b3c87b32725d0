"""The `mnist-jax` command: parse the flags, call the library, print, and turn errors into exits.

Each command is a function of its parsed flags (cli/training.py, cli/saved.py); `train`'s flags
are the config's fields (cli/flags.py); `python scripts/NAME.py` runs the same. Exit status: 0 done
or stopped by a hook; 2 a user error (one line: `PROG: error: ...`); 3 the loss diverged; 128 + N
stopped by signal N (130 Ctrl-C, 143 SIGTERM). A stopped run is resumable.
"""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
from collections.abc import Callable, Sequence

import mnist_jax
from mnist_jax.cli import saved, training
from mnist_jax.cli.common import EXIT_DIVERGED, EXIT_USER_ERROR, Parser, say  # noqa: F401 (the exits, named here too)
from mnist_jax.cli.flags import add_cache_flags, add_data_flag, add_run_flag, given  # noqa: F401 (for tests)
from mnist_jax.errors import CheckpointError, UserError

COMMANDS = (training.add_train, saved.add_commands)  # in the order --help lists them


def parser(prog: str = "mnist-jax") -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The `mnist-jax` parser, and each subcommand's own."""
    top = Parser(prog=prog, description="The PyTorch MNIST notebook in JAX: train its CNN, evaluate it, use it.")
    top.add_argument("--version", action="version", version=f"mnist-jax {mnist_jax.__version__}")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    parsers = {}

    def command(name: str, func: Callable, run: str | None = None, data: bool = False) -> argparse.ArgumentParser:
        """A subcommand calling `func`: its RUN_DIR (`run` "positional" or "--run"), the cache flags, --data-dir."""
        summary = func.__doc__.splitlines()[0]
        parsers[name] = p = sub.add_parser(name, help=summary, description=summary)
        if run is not None:
            add_run_flag(p, positional=run == "positional")
        add_cache_flags(p)
        if data:
            add_data_flag(p)
        p.set_defaults(func=func)
        return p

    for add in COMMANDS:
        add(command)
    return top, parsers


def execute(argv: Sequence[str], prog: str = "mnist-jax", command: str | None = None, *,
            leave_after_checkpoint_error: bool = False) -> int:
    """Parse `argv` and run the command; `command` fixes it (as `python scripts/train.py` does), and
    error messages then start with `prog` alone. `leave_after_checkpoint_error` (for a process of its
    own): after a checkpoint error, end the process at once with exit status 2, since a failed Orbax
    save leaves threads mid-write that can crash the interpreter as it shuts down (seen as SIGSEGV)."""
    top, parsers = parser(prog)
    if command is not None:
        parsers[command].prog = prog
        args = parsers[command].parse_args(list(argv))
    else:
        args, unknown = top.parse_known_args(list(argv))
        command = args.command
        if unknown:  # said by the command's own parser, which names the command
            parsers[command].error(f"unrecognized arguments: {' '.join(unknown)}")
    args.prog = parsers[command].prog
    if command == "train":
        training.check_args(parsers[command], args)
    try:
        return args.func(args)
    except UserError as e:
        say(f"{args.prog}: error: {e}", file=sys.stderr)
        if leave_after_checkpoint_error and isinstance(e, CheckpointError):
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_USER_ERROR)
        return EXIT_USER_ERROR


def main(argv: Sequence[str] | None = None, prog: str = "mnist-jax", command: str | None = None) -> int:
    """The `mnist-jax` console script, and `python scripts/NAME.py` (which fixes `command` and names
    itself in its errors)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        code = execute(argv, prog, command, leave_after_checkpoint_error=True)
        sys.stdout.flush()  # here, where a failure can still be reported, not at the interpreter's exit
        return code
    except KeyboardInterrupt:  # Ctrl-C outside training (which handles its own), e.g. while importing
        print("interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly, as Unix tools do
        _drop_stdout()
        return 128 + signal.SIGPIPE
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EIO, errno.EDQUOT, errno.EFBIG):
            raise
        _drop_stdout()
        print(f"{' '.join([prog, *([] if command else argv[:1])])}: error: {e.filename or 'the output'}: cannot write "
              f"({e.strerror})", file=sys.stderr)
        return EXIT_USER_ERROR


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so that the interpreter's last flush has nowhere to fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def script_main(command: str) -> int:
    """`python scripts/NAME.py ...`: the command `command`, its errors named after the script."""
    return main(prog=os.path.basename(sys.argv[0]), command=command)
