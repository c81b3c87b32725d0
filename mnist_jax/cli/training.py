"""`mnist-jax train`: its flags, the run, and what the command says of how it ended."""

from __future__ import annotations

import argparse
import signal
import sys

from mnist_jax import config as cfg
from mnist_jax import files, hooks, run  # hooks and run: packages whose modules import on first use
from mnist_jax.cli.common import EXIT_DIVERGED, configure, say
from mnist_jax.cli.flags import add_fields, given, path
from mnist_jax.errors import UserError


def train(args: argparse.Namespace) -> int:
    """Train the notebook's CNN on MNIST and reproduce its log and figures."""
    files.check_name_lengths(args.resume)  # a traceback otherwise; --run-dir: rundir.check_writable
    distributed = run.environment.Distributed(**given(args, run.environment.Distributed))
    configure(args, distributed if args.distributed else None)
    from mnist_jax import recipes

    settings, options = given(args, cfg.TrainConfig), cfg.RunOptions(**given(args, cfg.RunOptions))
    extra = [hooks.spec.load_hook(spec) for spec in args.hook]
    swept = cfg.parse_sweep(settings["sweep"])[0] if settings.get("sweep") else None
    if swept in settings:
        raise UserError(f"--{swept.replace('_', '-')} and --sweep {settings['sweep']} both set {swept}; give one")
    if args.resume:
        outcome = run.experiment.resume(args.resume, settings, options, extra_hooks=extra)
    else:
        config = recipes.config(args.recipe or "notebook", **settings)  # a flag given wins over the recipe
        outcome = run.experiment.run(config, args.run_dir, options, extra_hooks=extra)
    return report(outcome, args.prog)


def report(outcome, prog: str) -> int:
    """Say how training ended; the exit status."""
    from mnist_jax.fast import parallel

    if outcome.status == "diverged":
        say(f"{prog}: error: {outcome.message}", file=sys.stderr)
        return EXIT_DIVERGED
    if outcome.status == "stopped":
        last = len(outcome.history["train_loss"]) - 1
        say(hooks.console.stopped_line(outcome.workdir, last, outcome.state is None, outcome.by_hook), file=sys.stderr)
        return 0 if outcome.by_hook else 128 + (outcome.signal or signal.SIGTERM)  # a hook's stop is no failure
    if not parallel.is_primary():
        return 0
    for line in run.experiment.finished_lines(outcome):
        say(line)
    return 0


def add_train(command) -> None:
    """`train` and its flags: the recipe, every config field, where the run goes, hooks, multi-host."""
    from mnist_jax.recipes import RECIPES

    p = command("train", train)
    p.add_argument("--recipe", choices=RECIPES, default=None,
                   help="named settings with the results they reached (mnist_jax/recipes.py); the flags below "
                        "change what they name (default: notebook)")
    add_fields(p, cfg.TrainConfig)
    add_fields(p, cfg.RunOptions)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--run-dir", type=path, default=None,
                       help="where to write this run (default: runs/<date>-<time> under the current directory)")
    where.add_argument("--resume", metavar="RUN_DIR", type=path, default=None,
                       help="continue the run in RUN_DIR from its last checkpoint (with --epochs: up to that many)")
    p.add_argument("--hook", action="append", default=[], metavar="MODULE:NAME[:KEY=VALUE,...]",
                   help="also call a hook, NAME(KEY='VALUE', ...) from MODULE (a mnist_jax.hooks.Hook subclass; the "
                        "current directory is searched first), e.g. mnist_jax.hooks.logs:CsvLog:path=metrics.csv; "
                        "repeatable")
    p.add_argument("--distributed", action="store_true",
                   help="multi-host: call jax.distributed.initialize() first and run the same command on every "
                        "host; SLURM, Open MPI, Kubernetes and Cloud TPU fill in the three flags below")
    add_fields(p, run.environment.Distributed)


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """The contradictions among train's flags that argparse cannot see, said as its errors."""
    if args.resume and getattr(args, "overwrite", False):
        p.error("--resume and --overwrite contradict each other")
    if args.resume and args.recipe is not None:
        p.error("--recipe starts a run; a resumed run keeps its own settings")
    if not args.distributed and given(args, run.environment.Distributed):
        p.error("--coordinator, --num-processes and --process-id need --distributed")
