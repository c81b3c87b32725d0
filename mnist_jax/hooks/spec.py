"""A hook named on the command line: `--hook MODULE:NAME[:KEY=VALUE,...]`, as `load_hook` makes it."""

from __future__ import annotations

import importlib
import os
import sys

from mnist_jax.errors import UserError
from mnist_jax.hooks import Hook


def load_hook(spec: str) -> Hook:
    """`--hook MODULE:NAME[:KEY=VALUE,...]`: NAME from MODULE (importable from the current directory
    or the Python path), called with the KEY=VALUE pairs as keyword arguments, each value a string,
    to make the hook, a `mnist_jax.hooks.Hook`. Any mistake is a one-line UserError naming `spec`."""
    module_name, name, arguments = parse_hook_spec(spec)
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # as `python -m` finds the current directory's modules
    try:
        hook = getattr(importlib.import_module(module_name), name)(**arguments)
    except UserError as e:  # a hook that says itself what is wrong with its arguments
        raise UserError(f"--hook {spec}: {e}") from None
    except Exception as e:  # the user's code: any error in it is theirs, said in one line
        raise UserError(f"--hook {spec}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                        .rstrip(": ")) from None
    if not isinstance(hook, Hook):
        raise UserError(f"--hook {spec}: made a {type(hook).__name__}, not a mnist_jax.hooks.Hook")
    return CommandLineHook(hook, spec)


class CommandLineHook(Hook):
    """A `--hook`'s hook, whose `sys.exit()` would otherwise end the command without a word (and with
    status 0 for `sys.exit(0)`): it is a one-line UserError naming the hook and what stops a run."""

    def __init__(self, hook: Hook, spec: str):
        self.hook, self.spec = hook, spec

    @property
    def progress_chunks(self) -> int:
        return self.hook.progress_chunks

    def _call(self, method: str, *args):
        try:
            return getattr(self.hook, method)(*args)
        except SystemExit as e:
            raise UserError(f"--hook {self.spec} called sys.exit({e.code!r}) in {method}; the run ends there, "
                            f"resumable from its last checkpoint (a hook stops a run by returning \"after-epoch\" "
                            f"from stop())") from None

    def on_prepare(self, source, dataset="mnist"):
        self._call("on_prepare", source, dataset)

    def on_start(self, start):
        self._call("on_start", start)

    def on_epoch_start(self, epoch):
        self._call("on_epoch_start", epoch)

    def on_epoch_dispatched(self, epoch):
        self._call("on_epoch_dispatched", epoch)

    def on_progress(self, epoch, done, total):
        self._call("on_progress", epoch, done, total)

    def on_epoch(self, epoch, record, state, history):
        self._call("on_epoch", epoch, record, state, history)

    def stop(self):
        return self._call("stop")

    def on_end(self, outcome):
        self._call("on_end", outcome)


def parse_hook_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """MODULE, NAME and the keyword arguments of a `--hook` spec; a UserError for a malformed one."""
    module_name, _, rest = spec.partition(":")
    name, _, listed = rest.partition(":")  # a value may hold ":" (a path), never ","
    if not module_name or not name:
        raise UserError(f"--hook {spec}: expected MODULE:NAME or MODULE:NAME:KEY=VALUE,..., "
                        f"e.g. mnist_jax.hooks.logs:CsvLog:path=metrics.csv")
    arguments: dict[str, str] = {}
    for pair in listed.split(",") if listed else []:
        key, equals, value = pair.partition("=")
        if not equals or not key.isidentifier():
            raise UserError(f"--hook {spec}: expected KEY=VALUE after {name}:, got {pair!r}")
        if key in arguments:
            raise UserError(f"--hook {spec}: {key} is given twice")
        arguments[key] = value
    return module_name, name, arguments
