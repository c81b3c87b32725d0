"""A run directory and its lifecycle. Every file is written atomically:

    history.json        config, per-epoch history, `finished`, where it ran (rewritten each epoch)
    checkpoints/        Orbax checkpoints of the last few epochs (see mnist_jax.checkpoints)
    params.msgpack      the final params (stacked on a seed axis for --seeds N)
    training.svg, classification.svg   the notebook's two figures
    seed-S/             for a multi-seed run: each seed's own run (history.json, params.msgpack)

    run = Run.create("runs/quick", config)           # refuses a directory that holds a run
    run.write_history(history)                        # after each epoch
    run.finish(history, params, system, figures)      # history.json marked finished last
    config, history, params = load_run("runs/quick")

In a multi-host run every process holds a `Run`; only the primary process (0) writes.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import flax.serialization
import jax
import numpy as np

from mnist_jax import history as hist
from mnist_jax.config import TrainConfig, resume_config
from mnist_jax.errors import ConfigError, UserError
from mnist_jax.files import write_atomic
from mnist_jax.model import Params, classifier_for, init_params

HISTORY_FILE = "history.json"
PARAMS_FILE = "params.msgpack"
CHECKPOINT_DIR = "checkpoints"
FIGURE_FILES = ("training.svg", "classification.svg")


class RunError(UserError, ValueError):
    """A run directory is missing, incomplete, unreadable or already used; the message is one line."""


class RunRecord(NamedTuple):
    config: TrainConfig
    history: hist.History
    finished: bool
    system: dict[str, Any]


def _history_json(config: TrainConfig, history: hist.History, finished: bool, system: dict[str, Any] | None) -> bytes:
    record = {"config": dataclasses.asdict(config), "finished": finished, "history": history, "system": system or {}}
    return (json.dumps(record, indent=1) + "\n").encode()


def _seed_dir(run_dir: Path, seed: int) -> Path:
    return run_dir / f"seed-{seed}"


def holds_a_run(run_dir: str | os.PathLike) -> bool:
    """Whether anything of a run is in `run_dir`: its history, checkpoints, params or seed runs."""
    run_dir = Path(run_dir)
    return any((run_dir / name).exists() for name in (HISTORY_FILE, CHECKPOINT_DIR, PARAMS_FILE)) or any(
        run_dir.glob("seed-*"))


class Run:
    """A run directory being written by training. Build one with `Run.create` or `Run.resume`."""

    def __init__(self, path: str | os.PathLike, config: TrainConfig, *, primary: bool = True,
                 saved: RunRecord | None = None):
        self.path = Path(path)
        self.config = config
        self.primary = primary
        self.saved = saved  # for a resumed run: its history.json as it was found

    @classmethod
    def create(cls, path: str | os.PathLike, config: TrainConfig, *, overwrite: bool = False,
               primary: bool = True) -> Run:
        """A new run in `path`. A directory that holds a run is refused, unless `overwrite`: then the
        earlier run's files are deleted (by the primary process only), so none can be mistaken for ours."""
        path = Path(path)
        if holds_a_run(path):
            if not overwrite:
                raise RunError(f"{path} already holds a run; --resume it, pick another --run-dir, or pass --overwrite")
            if primary:
                for name in (CHECKPOINT_DIR, *(p.name for p in path.glob("seed-*"))):
                    shutil.rmtree(path / name, ignore_errors=True)
                for name in (HISTORY_FILE, PARAMS_FILE, *FIGURE_FILES):
                    (path / name).unlink(missing_ok=True)
        check_writable(path)
        return cls(path, config, primary=primary)

    @classmethod
    def resume(cls, path: str | os.PathLike, given: Mapping[str, Any], *, primary: bool = True) -> Run:
        """The run in `path` to train on, its config being the saved one with the `given` settings
        that a resume may change (see `config.resume_config`)."""
        saved = read_record(path)
        config = resume_config(saved.config, dict(given))
        check_writable(Path(path))
        return cls(path, config, primary=primary, saved=saved)

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    def write_history(self, history: hist.History) -> None:
        """history.json of the run so far, not finished."""
        if self.primary:
            write_atomic(self.path / HISTORY_FILE, _history_json(self.config, history, False, None))

    def finish(self, history: hist.History, params: Params, system: dict[str, Any],
               files: Mapping[str, bytes] | None = None) -> None:
        """Write the final params, each seed's own run, `files` (the figures), and then, last of all,
        history.json marked finished: a run marked finished has everything."""
        if not self.primary:
            return
        params = jax.tree_util.tree_map(np.asarray, params)
        write_atomic(self.path / PARAMS_FILE, flax.serialization.to_bytes(params))
        if self.config.seeds > 1:
            for i in range(self.config.seeds):
                seed = self.config.seed + i
                seed_config = dataclasses.replace(self.config, seed=seed, seeds=1)
                seed_dir = _seed_dir(self.path, seed)
                seed_dir.mkdir(exist_ok=True)
                write_atomic(seed_dir / PARAMS_FILE,
                             flax.serialization.to_bytes(jax.tree_util.tree_map(lambda p: p[i], params)))
                write_atomic(seed_dir / HISTORY_FILE,
                             _history_json(seed_config, hist.seed_history(history, i), True, system))
        for name, content in (files or {}).items():
            write_atomic(self.path / name, content)
        write_atomic(self.path / HISTORY_FILE, _history_json(self.config, history, True, system))


def check_writable(directory: Path) -> None:
    """Make `directory` if needed; a RunError if nothing can be written there."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise RunError(f"{directory}: cannot write here ({e.strerror})") from None


def copy_figures(run_dir: Path, figures_dir: Path, *, seeds: int) -> list[Path]:
    """Copy a finished run's figures into `figures_dir`; a run of several seeds draws another history
    figure, which goes to training_seeds.svg so that a single run's training.svg stays."""
    names = {"training.svg": "training_seeds.svg"} if seeds > 1 else {name: name for name in FIGURE_FILES}
    for source, target in names.items():
        write_atomic(figures_dir / target, (run_dir / source).read_bytes())
    return [figures_dir / target for target in names.values()]


def read_record(run_dir: str | os.PathLike) -> RunRecord:
    """history.json of a run: config, history, whether it finished, where it ran."""
    path = Path(run_dir) / HISTORY_FILE
    try:
        record = json.loads(path.read_text())
        config = TrainConfig.from_dict(record["config"])
        history = record["history"]
        if not all(isinstance(history[k], list) for k in hist.METRIC_KEYS):
            raise TypeError
    except FileNotFoundError:
        raise RunError(f"{path}: not found (is {run_dir} a run directory of mnist-jax train?)") from None
    except (OSError, ValueError, KeyError, TypeError, ConfigError) as e:
        raise RunError(f"{path}: not a valid run history ({type(e).__name__})") from None
    return RunRecord(config, history, bool(record.get("finished", True)), record.get("system", {}))


def load_history(run_dir: str | os.PathLike) -> tuple[TrainConfig, hist.History]:
    record = read_record(run_dir)
    return record.config, record.history


def load_params(run_dir: str | os.PathLike, config: TrainConfig) -> Params:
    """The saved final params; for a multi-seed run, every seed's, stacked on a leading axis."""
    path = Path(run_dir) / PARAMS_FILE
    template = jax.eval_shape(functools.partial(init_params, classifier_for(config)), jax.random.key(0))
    template = jax.tree_util.tree_map(lambda p: np.zeros((config.seeds, *p.shape) if config.seeds > 1 else p.shape,
                                                         p.dtype), template)
    try:
        params = flax.serialization.from_bytes(template, path.read_bytes())
    except FileNotFoundError:
        raise RunError(f"{path}: not found") from None
    except Exception as e:  # msgpack raises several unrelated types on bad bytes
        raise RunError(f"{path}: not valid saved params ({type(e).__name__})") from None
    for (where, got), want in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves(template)):
        if np.shape(got) != want.shape:  # from_bytes takes any shape
            raise RunError(f"{path}: not valid saved params ({jax.tree_util.keystr(where)} has shape "
                           f"{np.shape(got)} where the model has {want.shape})")
    return params


def load_run(run_dir: str | os.PathLike) -> tuple[TrainConfig, hist.History, Params]:
    """Config, history and params of a run: the final params, or for an unfinished run the latest checkpoint's.

    A history.json without the `finished` flag (older runs) counts as finished.
    """
    from mnist_jax.checkpoints import CheckpointError, Checkpointer
    from mnist_jax.train import initial_state

    config, history, finished, _ = read_record(run_dir)
    if config.seeds > 1:
        raise RunError(f"{run_dir} holds {config.seeds} seeds; pass one seed's run, "
                       f"e.g. {_seed_dir(Path(run_dir), config.seed)}")
    if finished:
        return config, history, load_params(run_dir, config)
    checkpointer = Checkpointer(Path(run_dir) / CHECKPOINT_DIR, create=False)
    try:
        state, history = checkpointer.restore_latest(initial_state(config))
    except CheckpointError as e:
        raise RunError(str(e)) from None
    finally:
        checkpointer.close()
    return config, history, state.params
