"""Flags made from the config: a field's kind, choices and bounds become its argparse flag
(scripts/flag_tables.py writes the docs' tables of them)."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from mnist_jax import config as cfg
from mnist_jax.errors import ConfigError

MAX_GRID = 16  # rows or columns of digits in a figure: 16 x 16 = 256 digits is already hard to read


def value_parser(field: cfg.Field) -> Callable[[str], object]:
    """argparse type for a field: the text as the field's kind, within its choices and bounds."""
    def parse(text: str):
        try:
            value = field.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if field.kind is int else 'a number'}, "
                                             f"got {text!r}") from None
        try:
            field.check(value)
        except ConfigError as e:
            # As typed, where the float it became says less (1e-400 is 0.0).
            shown = str(e) if str(value) == text else f"{e} (--{field.name.replace('_', '-')} {text})"
            raise argparse.ArgumentTypeError(shown) from None
        return value

    parse.__name__ = field.name
    return parse


def number(name: str, kind: type = int, **bounds) -> Callable[[str], object]:
    """argparse type for a flag that is no config field: `kind`, within `bounds` (see config.setting)."""
    return value_parser(cfg.Field(name, kind, **bounds))


def path(text: str) -> Path:
    """argparse type for a path: any text but the empty one."""
    if not text:
        raise argparse.ArgumentTypeError("expected a path, got ''")
    return Path(text)


def add_fields(parser: argparse.ArgumentParser, cls: type, names: Sequence[str] | None = None) -> None:
    """A flag for each field of the config class `cls` (or those in `names`), with its help, choices
    and bounds. Flags not given stay out of the parsed namespace, so a resume can tell them apart."""
    for f in cfg.fields(cls):
        if names is not None and f.name not in names:
            continue
        help = f"{f.help} (default: {f.shown_default()})".replace("%", "%%")  # argparse formats help with %
        kwargs: dict = {"help": help, "default": argparse.SUPPRESS}
        if f.kind is bool:
            kwargs["action"] = "store_false" if f.default is True else "store_true"
        elif f.choices is not None:
            kwargs["choices"] = f.choices
        else:
            kwargs.update(type=value_parser(f), metavar=metavar(f))
        parser.add_argument(f.flag, *f.aliases, dest=f.name, **kwargs)


def metavar(f: cfg.Field) -> str | None:
    return f.metavar or {int: "N", float: "X", Path: "DIR"}.get(f.kind)


def given(args: argparse.Namespace, cls: type) -> dict:
    """The fields of `cls` given on the command line."""
    return {f.name: getattr(args, f.name) for f in cfg.fields(cls) if hasattr(args, f.name)}


# The flags several commands share.

def add_cache_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--compile-cache", metavar="DIR", default=None,
                   help="JAX's persistent compilation cache, so later runs skip compiling "
                        "(default: $JAX_COMPILATION_CACHE_DIR, else ~/.cache/mnist-jax/jax-compile)")
    p.add_argument("--no-compile-cache", action="store_true", help="compile from scratch, cache nothing")


def add_data_flag(p: argparse.ArgumentParser) -> None:
    add_fields(p, cfg.RunOptions, ["data_dir"])
    p.set_defaults(data_dir=None)


def add_run_flag(p: argparse.ArgumentParser, positional: bool) -> None:
    names, kwargs = (["run_dir"], {"nargs": "?"}) if positional else (["--run"], {"dest": "run_dir", "metavar": "RUN_DIR"})
    p.add_argument(*names, type=path, default=None, **kwargs,
                   help="a run directory written by mnist-jax train; one seed's (RUN_DIR/seed-S) for a run of several "
                        "seeds (default: the weights bundled in the package, the notebook's 30 epochs)")


def grid_flags(p: argparse.ArgumentParser, rows: int, cols: int, what: str) -> None:
    grid = number("rows", minimum=1, maximum=MAX_GRID), number("cols", minimum=1, maximum=MAX_GRID)
    p.add_argument("--rows", type=grid[0], default=rows, help=f"rows of {what}, at most 16 (default: %(default)s)")
    p.add_argument("--cols", type=grid[1], default=cols, help=f"columns of {what}, at most 16 (default: %(default)s)")
