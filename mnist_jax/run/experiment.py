"""A whole training run in a run directory: what `mnist-jax train` does, callable from Python.

    from mnist_jax.run import experiment
    from mnist_jax.config import RunOptions, TrainConfig

    outcome = experiment.run(TrainConfig(epochs=3), "runs/quick")        # prints as the command does
    outcome = experiment.resume("runs/quick", {"epochs": 5})             # on from the last checkpoint
    outcome.status, outcome.history["test_accuracy"][-1]                 # "finished", ~0.91

Both prepare the data (once per data dir), check the settings against the data and the memory
free, lay the work out over the devices, lock the run directory, train with a checkpoint after
every epoch, and write the final files: params.msgpack, the two figures, and history.json marked
finished last. Ctrl-C or SIGTERM stops after the epoch (`outcome.status == "stopped"`); every
mistake in the input is a `mnist_jax.errors.UserError` with a one-line message.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from mnist_jax import choices, data
from mnist_jax.apps import inference, novelty
from mnist_jax.config import RunOptions, TrainConfig
from mnist_jax.errors import ConfigError
from mnist_jax.fast import model_for, parallel, programs
from mnist_jax.hooks import Hook, Hooks, Start, console
from mnist_jax.hooks.profiling import ProfileEpoch
from mnist_jax.hooks.tensorboard import TensorBoard
from mnist_jax.optimizer import weight_decay
from mnist_jax.run import environment, loop, memory
from mnist_jax.run import history as hist
from mnist_jax.run import rundir as rd
from mnist_jax.run.checkpoints import Checkpointer, CheckpointHook, Restored
from mnist_jax.steps import eval_batch_size
from mnist_jax.sweep import best_model, model_dir_names


@dataclasses.dataclass(frozen=True)
class RunOutcome(loop.Outcome):
    """What `run` and `resume` return: the loop's outcome, and what became of it in the run directory."""

    workdir: Path | None = None
    message: str = ""  # for "diverged": what happened and what is kept
    signal: int | None = None  # for "stopped": the signal that asked for it, if any
    copied_figures: tuple[tuple[Path, bool], ...] = ()  # --figures-dir's copies, and whether each replaced a file
    profile: str | None = None  # with --profile-epoch: where its trace went (ProfileEpoch.summary)

    @property
    def by_hook(self) -> bool:
        """Stopped by a hook's `stop`, not by a signal to this process or to another host's."""
        return self.status == "stopped" and self.signal is None and jax.process_count() == 1


def run(config: TrainConfig, workdir: str | os.PathLike | None = None, options: RunOptions = RunOptions(),
        hooks: Sequence[Hook] | None = None, extra_hooks: Sequence[Hook] = ()) -> RunOutcome:
    """Train `config` in a new run directory `workdir` (default: runs/<date>-<time> under the
    current directory), which must hold no run unless `options.overwrite`. `hooks` replace the
    default `console.default_hooks(options.progress, options.log_interval)`; `extra_hooks` are called after them (as
    `mnist-jax train --hook` does)."""
    choices.check(config)  # before anything is written: a setting none of its parts reads
    workdir = Path(workdir) if workdir is not None else default_workdir()
    try:
        fresh = not any(workdir.iterdir())  # default_workdir made it empty
    except OSError:
        fresh = True  # absent (or a path the OS refuses, which _create says in one line)
    with _create(workdir, config, options.overwrite) as run_dir:
        try:
            return _train(run_dir, None, options, hooks, extra_hooks)
        except BaseException:
            # A run refused before training started (a setting the data refuses, a model that does
            # not build) leaves no directory behind that it made: nothing in it is worth keeping.
            if run_dir.primary and not run_dir.checkpoint_dir.exists():
                if fresh:
                    shutil.rmtree(workdir, ignore_errors=True)
                else:  # a folder of the user's: only the history written at the start goes
                    (workdir / rd.HISTORY_FILE).unlink(missing_ok=True)
            raise


def resume(workdir: str | os.PathLike, changes: Mapping[str, Any] | None = None, options: RunOptions = RunOptions(),
           hooks: Sequence[Hook] | None = None, extra_hooks: Sequence[Hook] = ()) -> RunOutcome:
    """Continue the run in `workdir` from its newest intact checkpoint, bit for bit as if it had
    never stopped. `changes` may raise `epochs` and change `conv` or `precision`; another setting
    that differs from the run's is refused (`config.RESUMABLE_CHANGES`)."""
    run_dir = rd.RunDir.resume(workdir, dict(changes or {}), primary=parallel.is_primary())
    with run_dir:
        # What the resume changes must be read by the run's parts; what the run had is not judged again.
        changed = [name for name, value in (changes or {}).items() if value != getattr(run_dir.saved.config, name)]
        choices.check(run_dir.config, changed)
        done = hist.epochs_done(run_dir.saved.history)
        if run_dir.saved.finished and done >= run_dir.config.epochs:
            raise rd.RunError(f"{run_dir.path} already trained {done} epochs; pass --epochs N with N larger to "
                              f"train on")
        if run_dir.saved.finished and hist.reached(run_dir.saved.history, run_dir.config.stop_at_accuracy):
            raise rd.RunError(f"{run_dir.path} ended after epoch {done - 1}, where it reached --stop-at-accuracy "
                              f"{run_dir.config.stop_at_accuracy:g}; pass a higher --stop-at-accuracy to train on")
        with Checkpointer(run_dir.checkpoint_dir, create=False) as checkpointer:
            if not checkpointer.epochs():
                raise rd.RunError(f"{run_dir.path}: no checkpoint to resume from (the run stopped in its first "
                                  f"epoch); start it again with --run-dir {run_dir.path} --overwrite")
            # The newest intact checkpoint, not history.json, is where training goes on from.
            start = checkpointer.restore_latest(programs.initial_state(run_dir.config))
        start = start._replace(history=hist.upgrade(start.history, run_dir.config))  # saved before a metric existed
        if start.epoch > run_dir.config.epochs:
            raise rd.RunError(f"{run_dir.path} has trained {start.epoch} epochs, more than --epochs "
                              f"{run_dir.config.epochs}; pass --epochs {start.epoch} or more")
        return _train(run_dir, start, options, hooks, extra_hooks)


def default_workdir() -> Path:
    """runs/<date>-<time>, made here and now, so that no other run takes it: a run started in the
    same second gets runs/<date>-<time>-2 (and so on). Process 0 names it for all processes."""
    now = datetime.datetime.now()
    stamp, n = (int(now.strftime("%Y%m%d")), int(now.strftime("%H%M%S"))), 1
    if parallel.is_primary():
        rd.check_writable(Path("runs"))
        while True:
            try:
                _named(stamp, n).mkdir()
                break
            except FileExistsError:
                n += 1
            except OSError as e:
                raise rd.RunError(f"{_named(stamp, n)}: cannot write here ({e.strerror})") from None
    *stamp, n = parallel.from_primary((*stamp, n))
    return _named(stamp, n)


def _named(stamp: tuple[int, int], n: int) -> Path:
    name = f"{stamp[0]:08d}-{stamp[1]:06d}"
    return Path("runs") / (name if n == 1 else f"{name}-{n}")


def _create(workdir: Path, config: TrainConfig, overwrite: bool) -> rd.RunDir:
    """A new locked run directory, made by every process together: if process 0 cannot make it,
    all of them fail, and none waits for the others."""
    try:
        run_dir, refused = rd.RunDir.create(workdir, config, overwrite=overwrite, primary=parallel.is_primary()), None
    except rd.RunError as e:
        run_dir, refused = None, e
    if parallel.agree_any(refused is not None):
        if run_dir is not None:
            run_dir.close()
        raise refused or rd.RunError(f"{workdir}: process 0 could not create the run directory")
    parallel.barrier("run directory ready")  # process 0 has cleared an overwritten run
    return run_dir


def _load_data(config: TrainConfig, options: RunOptions, hooks: Hook) -> tuple[loop.Data, loop.Data, Path]:
    """The examples `config` trains and tests on (the first `train_examples` and `test_examples`)."""
    dataset = config.dataset
    source = Path(options.manual_dir or data.DATASETS[dataset].source_dir)
    if source.is_dir() and not data.is_prepared(options.data_dir, dataset):  # else prepare says what is missing
        hooks.on_prepare(source, dataset)
    path = data.prepare(options.data_dir, options.manual_dir, dataset)
    return (data.load_split("train", options.data_dir, dataset, config.train_examples),
            data.load_split("test", options.data_dir, dataset, config.test_examples), path)


def _train(run_dir: rd.RunDir, start: Restored | None, options: RunOptions, hooks: Sequence[Hook] | None,
           extra_hooks: Sequence[Hook]) -> RunOutcome:
    """Everything after the run directory is settled: data, checks, training, the final files."""
    config = run_dir.config
    done = start.epoch if start is not None else 0
    if options.profile_epoch is not None and not done <= options.profile_epoch < config.epochs:
        raise ConfigError(f"--profile-epoch {options.profile_epoch} is not an epoch this run trains "
                          f"({done} ... {config.epochs - 1})")
    logs = [TensorBoard(run_dir.path / rd.TENSORBOARD_DIR)] if options.tensorboard and run_dir.primary else []
    profile = None
    if options.profile_epoch is not None and run_dir.primary:
        profile = ProfileEpoch(options.profile_epoch, run_dir.path / rd.PROFILE_DIR)
        logs.append(profile)
    hooks = Hooks([*logs, *(console.default_hooks(options.progress, options.log_interval) if hooks is None else hooks), *extra_hooks])
    if options.figures_dir:
        rd.check_writable(options.figures_dir)
        if rd.holds_a_run(options.figures_dir) and Path(options.figures_dir).resolve() != run_dir.path.resolve():
            raise rd.RunError(f"--figures-dir {options.figures_dir} holds a run, whose figures are its own; pick "
                              f"another folder")
    train_data, test_data, dataset = _load_data(config, options, hooks)
    for flag, wanted, split in (("train-examples", config.train_examples, train_data),
                                ("test-examples", config.test_examples, test_data)):
        if wanted is not None and wanted > len(split[1]):
            raise ConfigError(f"--{flag} {wanted} is more than the {len(split[1])} examples there are")
    num_train, num_test = len(train_data[1][:config.train_examples]), len(test_data[1][:config.test_examples])
    if config.validation_examples:
        run_dir.notes["validation_indices"] = loop.validation_indices(num_train, config.validation_examples).tolist()
        num_train -= config.validation_examples
    if config.batch_size > num_train:
        raise ConfigError(f"--batch-size {config.batch_size} is larger than the {num_train} training examples")
    mesh = parallel.make_mesh(config.models, (config.batch_size, eval_batch_size(config.test_batch_size, num_test)))
    if options.log_interval and mesh is not None:  # every device runs whole epochs: nothing to print between
        raise ConfigError(f"--log-interval {options.log_interval} has no effect on a run spread over "
                          f"{mesh.size} devices")
    memory.check(config, num_test, mesh)
    hooks.on_start(Start(config, run_dir.path, dataset, num_train, num_test, parallel.describe(mesh),
                         start.history if start is not None else hist.empty(),
                         tuple(map(str, start.damaged)) if start is not None else ()))

    # Leaving the block waits for the last checkpoint; an error in flight closes it without a second one.
    with Checkpointer(run_dir.checkpoint_dir, keep=options.keep_checkpoints) as checkpointer, \
            console.StopOnSignal() as stop:
        outcome = loop.train(config, train_data, test_data, mesh=mesh,
                             start=(start.state, start.history) if start is not None else None,
                             hooks=[CheckpointHook(checkpointer, run_dir.write_history), stop, hooks])
    outcome = RunOutcome(**{f.name: getattr(outcome, f.name) for f in dataclasses.fields(outcome)},
                         workdir=run_dir.path, signal=stop.signal, profile=profile and profile.summary())
    if outcome.status == "diverged":  # the message names the newest checkpoint: asked once all saves are done
        return dataclasses.replace(outcome, message=hist.divergence_message(
            *outcome.diverged_at, kept_epoch=checkpointer.latest_epoch(), weight_decay=weight_decay(config),
            models=model_dir_names(config) if config.models > 1 else ()))
    if outcome.status == "finished":
        _finish(run_dir, outcome, train_data, test_data, options.doubts)
        if options.figures_dir and run_dir.primary:
            copied = rd.copy_figures(run_dir.path, options.figures_dir, seeds=config.seeds,
                                     sweep=config.sweep is not None)
            outcome = dataclasses.replace(outcome, copied_figures=tuple(copied))
    return outcome


def _finish(run_dir: rd.RunDir, outcome: loop.Outcome, train_data: loop.Data, test_data: loop.Data,
            with_rule: bool = True) -> None:
    """The run's final files: params, seed runs, the two figures, then history.json marked finished."""
    config = run_dir.config
    system = environment.system_info(outcome.seconds)
    params = parallel.to_host(outcome.state.params)  # a collective where the params span hosts
    if not run_dir.primary:
        return
    from mnist_jax.apps import plotting  # matplotlib takes half a second to import; only this needs it

    shown = 0 if config.sweep is None else best_model(config, outcome.history)  # the model the figure shows
    first_seed = params if config.models == 1 else jax.tree_util.tree_map(lambda p: p[shown], params)
    images, labels = test_data
    figures = {
        **({"training.svg": plotting.plot_history(outcome.history)} if config.sweep is None
           else {rd.SWEEP_FIGURE: plotting.plot_sweep(config, outcome.history)}),
        "classification.svg": plotting.classification_sample(first_seed, model_for(config), images, labels,
                                                             jax.random.key(config.seed),
                                                             class_names=data.DATASETS[config.dataset].class_names),
    }
    models = [params] if config.models == 1 else [jax.tree_util.tree_map(lambda p, i=i: p[i], params)
                                                  for i in range(config.models)]
    doubts, run_dir.notes["unsure_rule"] = _doubt_rules(config, models, train_data, images, with_rule)
    run_dir.finish(outcome.history, params, system, {name: plotting.figure_bytes(f) for name, f in figures.items()},
                   doubts)


# The key of the made non-digits and the references of the "not a digit" rule (apps/novelty.py).
NOVELTY_KEY = 0x0D0B7


def _doubt_rules(config: TrainConfig, models: list, train_data: loop.Data, test_images: np.ndarray,
                 with_rule: bool = True) -> tuple[list[inference.Doubts], dict[str, Any]]:
    """Each model's thresholds of "unsure" and rule of "not a digit" (apps/novelty.py), chosen on
    the validation split where the run holds one out; else on the test set's even-numbered digits,
    the share they call reported on the odd-numbered ones, which no choice has seen. And the way
    they were chosen, for the record."""
    train_data, validation = loop.split_validation(config, train_data)
    test_images = test_images[:config.test_examples]
    chosen, reported = (validation[0], test_images) if validation else (test_images[0::2], test_images[1::2])
    doubts, shares = [], []
    for params in models:
        probabilities = inference.classify(params, chosen, model_for(config))
        rule = (novelty.fit(config, params, *train_data, chosen, probabilities, jax.random.key(NOVELTY_KEY))
                if with_rule else None)
        if rule is None:  # --no-doubts, or a network whose features cannot be read: the top probability alone
            doubts.append(inference.Doubts(inference.unsure_threshold(probabilities)))
        else:
            doubts.append(inference.Doubts(rule=rule))
        shares.append(float(np.mean(doubts[-1].flags(params, reported, model_for(config)))))
    chosen_how = {"chosen_on": "the validation split" if validation else "the test set's even-numbered examples",
                  "share": novelty.SHARE,
                  "unsure_share_reported": shares[0] if len(shares) == 1 else shares,
                  "reported_on": "the test set" if validation else "the test set's odd-numbered examples"}
    return doubts, chosen_how


def refit_doubts(run_dir: str | os.PathLike, options: RunOptions = RunOptions()) -> dict[str, Any]:
    """Choose a finished single-model run's threshold of "unsure" and its rule of "not a digit" again
    (a run written before the rule existed, the bundled one among them): novelty.msgpack written,
    history.json given the new thresholds; the params and every epoch untouched. The rule's record."""
    record, params = rd.load_record_and_params(run_dir)
    if not record.finished:
        raise rd.RunError(f"{run_dir} has not finished: its rule is chosen when it does")
    train_data, test_data, _ = _load_data(record.config, options, Hook())
    (doubts,), rule = _doubt_rules(record.config, [params], train_data, test_data[0])
    rd.write_doubts(run_dir, doubts, {"unsure_rule": rule})
    return rule


def finished_lines(outcome: RunOutcome) -> list[str]:
    """What `mnist-jax train` says after a run that trained to its end: a sweep's table, its seeds'
    summary, the accuracy that ended it early, what it trained and wrote, where its figures went."""

    from mnist_jax import sweep

    history, config, last = outcome.history, outcome.config, len(outcome.history["train_loss"]) - 1
    final = history["test_accuracy"][-1]
    what = console.epochs_phrase(outcome.first_epoch, last) if last >= outcome.first_epoch else "no epoch (all were done)"
    figures, lines = rd.FIGURE_FILES, []
    if config.sweep is not None:
        lines += [*sweep.table(config, history), f"Each model's run is in {outcome.workdir}/{config.sweep_name}=VALUE"
                  + ("-seed-S" if config.seeds > 1 else "")]
        what += f" of {config.models} models"
        figures = (rd.SWEEP_FIGURE, "classification.svg")
    elif np.ndim(final):
        what += f" of {len(final)} seeds"
        lines.append(console.seeds_summary(final, outcome.workdir))
    if hist.reached(history, config.stop_at_accuracy):
        watched = hist.chosen_on(history)
        lines.append(f"{watched.split('_')[0].capitalize()} accuracy {np.min(history[watched][-1]):.4f} after epoch "
                     f"{last} reached --stop-at-accuracy {config.stop_at_accuracy:g}: the run ends there")
    rule = [novelty.FILE] if (Path(outcome.workdir) / novelty.FILE).is_file() else []
    lines.append(f"Trained {what} in {outcome.seconds:.1f} s. Wrote {outcome.workdir}/"
                 f"{{{', '.join([rd.HISTORY_FILE, rd.PARAMS_FILE, *rule, *figures])}}}")
    if outcome.profile:
        lines.append(outcome.profile)
    if outcome.copied_figures:
        replaced = sum(was for _, was in outcome.copied_figures)
        lines.append(f"Copied the figures to {', '.join(str(path) for path, _ in outcome.copied_figures)}"
                     + (f" (replacing the {replaced} there before)" if replaced else ""))
    return lines
