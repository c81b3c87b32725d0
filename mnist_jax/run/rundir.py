"""A run directory and its lifecycle. Every file is written atomically:

    history.json        config, per-epoch history, `finished`, where it ran, the params' SHA-256
                        (rewritten after each epoch's checkpoint is committed)
    checkpoints/        Orbax checkpoints of the last few epochs (see mnist_jax.run.checkpoints)
    tensorboard/        TensorBoard event files (see mnist_jax.hooks.tensorboard)
    profile/            with --profile-epoch N: a jax.profiler trace of epoch N (see mnist_jax.hooks.profiling)
    params.msgpack      the final params (stacked on a model axis for --seeds N or --sweep)
    training.svg, classification.svg   the notebook's two figures
    sweep.svg           for a sweep: each value's test accuracy, final and best, and its curve
    seed-S/             for a multi-seed run: each seed's own run (history.json, params.msgpack)
    NAME=VALUE/         for a sweep: each value's own run (NAME=VALUE-seed-S/ with several seeds)
    .lock               held (flock) by the process writing the run, so there is only ever one

    with RunDir.create("runs/quick", config) as run:  # refuses a directory that holds a run or is in use
        run.write_history(history)                    # after each epoch's checkpoint is committed
        run.finish(history, params, system, figures)  # history.json marked finished last
    config, history, params = load_run("runs/quick")  # params checked against their SHA-256

In a multi-host run every process holds a `RunDir`; only the primary process (0) locks and writes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import flax.serialization
import jax
import numpy as np

from mnist_jax.apps import novelty
from mnist_jax.config import SWEEPABLE, TrainConfig, resume_config
from mnist_jax.errors import ConfigError, UserError, quoted
from mnist_jax.files import read_regular, write_atomic
from mnist_jax.model import Params
from mnist_jax.networks import param_shapes
from mnist_jax.run import environment
from mnist_jax.run import history as hist
from mnist_jax.sweep import model_dir_names

HISTORY_FILE = "history.json"
# A history holds ~0.5 kB per epoch and seed: 64 MB is over 100,000 of them.
MAX_HISTORY_BYTES = 64 * 2**20
PARAMS_FILE = "params.msgpack"
CHECKPOINT_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"  # event files, written by mnist_jax.hooks.tensorboard
PROFILE_DIR = "profile"  # a jax.profiler trace of one epoch (--profile-epoch), written by mnist_jax.hooks.profiling
FIGURE_FILES = ("training.svg", "classification.svg")
SWEEP_FIGURE = "sweep.svg"
LOCK_FILE = ".lock"
# The notebook's own run, trained with this code and shipped in the package: history.json (config,
# every epoch, where it ran, the params' SHA-256) and params.msgpack, read like any run directory.
BUNDLED_RUN = Path(__file__).parent.parent / "weights" / "notebook"
# Room left below the OS's path limit for the deepest file Orbax writes inside a run directory
# (checkpoints/N.orbax-checkpoint-tmp-.../state.orbax-checkpoint-tmp/ocdbt.process_0/d/<32 hex>).
PATH_ROOM = 200


class RunError(UserError, ValueError):
    """A run directory is missing, incomplete, unreadable or already used; the message is one line."""


class RunRecord(NamedTuple):
    config: TrainConfig
    history: hist.History
    finished: bool
    system: dict[str, Any]
    params_sha256: str | None  # of params.msgpack, in a finished run
    unsure_below: float | None = None  # top probabilities below it are "unsure" (inference.Doubts)
    not_a_digit: dict[str, Any] | None = None  # the thresholds of its novelty.msgpack, and that file's SHA-256


def _history_json(config: TrainConfig, history: hist.History, finished: bool, system: dict[str, Any] | None,
                  params_sha256: str | None = None, unsure_below: float | list[float] | None = None,
                  notes: Mapping[str, Any] | None = None, not_a_digit: dict[str, Any] | None = None) -> bytes:
    record = {"config": dataclasses.asdict(config), "finished": finished, "history": history, "system": system or {}}
    if hist.reached(history, config.stop_at_accuracy):
        watched = hist.chosen_on(history)
        record["stopped_at_accuracy"] = {"epoch": hist.epochs_done(history) - 1, "target": config.stop_at_accuracy,
                                         watched: history[watched][-1]}
    record.update(notes or {})
    if params_sha256 is not None:
        record["params_sha256"] = params_sha256
    if unsure_below is not None:
        record["unsure_below"] = unsure_below
    if not_a_digit is not None:
        record["not_a_digit"] = not_a_digit
    return (json.dumps(record, indent=1) + "\n").encode()


def sha256(content: bytes) -> str:
    return f"sha256:{hashlib.sha256(content).hexdigest()}"


# The folders of a run's models (`sweep.model_dir_names`): seed-S, NAME=VALUE, NAME=VALUE-seed-S.
_MODEL_DIR = re.compile(r"seed-\d+|(" + "|".join(SWEEPABLE) + r")=[^/]+")


def _model_dirs(run_dir: Path) -> list[Path]:
    return [p for p in run_dir.iterdir() if _MODEL_DIR.fullmatch(p.name) and p.is_dir()] if run_dir.is_dir() else []


def _recorded_config(run_dir: Path) -> TrainConfig | None:
    try:
        return read_record(run_dir).config
    except RunError:
        return None


def _is_checkpoint(path: Path, config: TrainConfig | None) -> bool:
    """An epoch's checkpoint folder as Orbax writes it (its number, or N.orbax-checkpoint-tmp-...):
    holding the metadata file Orbax commits it with, and no later than the recorded run's last epoch where that is known; so
    a user's checkpoints/2024/ is none."""
    match = re.fullmatch(r"(\d+)(\.orbax-checkpoint-tmp.*)?", path.name)
    if match is None or (config is not None and int(match.group(1)) > config.epochs):
        return False
    return bool(match.group(2)) or path.is_symlink() or (path / "_CHECKPOINT_METADATA").exists()


def _files_under(folder: Path, pattern: str) -> list[Path]:
    """Files and links under `folder` whose path relative to it matches `pattern`, found without
    entering a linked folder: a link is listed (to be removed as a link), never followed."""
    found = []
    for parent, dirs, files in os.walk(folder):  # os.walk does not follow links by default
        for name in [*files, *(d for d in dirs if (Path(parent) / d).is_symlink())]:
            path = Path(parent) / name
            if path.relative_to(folder).match(pattern):
                found.append(path)
    return found


def _written_by_a_run(run_dir: Path) -> list[Path]:
    """What training writes in `run_dir`, and only that, as it is there: the history, params and
    figures; each epoch's checkpoint folder; the model folders' history and params; the event
    files; the profile. Where history.json is readable, its config says which model folders and
    checkpoint numbers the run had; where not, their standard names alone. A link in the run's own
    names is listed as the link (removed as one), never followed out of the run directory."""
    config = _recorded_config(run_dir)
    written = [run_dir / name for name in (HISTORY_FILE, PARAMS_FILE, *FIGURE_FILES, SWEEP_FIGURE)]
    if config is None:
        model_dirs = [p for p in run_dir.iterdir() if _MODEL_DIR.fullmatch(p.name)] if run_dir.is_dir() else []
    else:
        model_dirs = [run_dir / name for name in model_dir_names(config)] if config.models > 1 else []
    for folder in (run_dir / CHECKPOINT_DIR, *model_dirs, run_dir / TENSORBOARD_DIR, run_dir / PROFILE_DIR):
        if folder.is_symlink():
            written.append(folder)
        elif not folder.is_dir():
            continue
        elif folder.name == CHECKPOINT_DIR:
            written += [p for p in folder.iterdir() if _is_checkpoint(p, config)]
        elif folder.name == TENSORBOARD_DIR:
            written += _files_under(folder, "events.out.tfevents.*")
        elif folder.name == PROFILE_DIR:
            written += _files_under(folder, "plugins/profile/*/*")
        else:
            written += [folder / HISTORY_FILE, folder / PARAMS_FILE]
    return [p for p in written if p.is_symlink() or p.exists()]


def holds_a_run(run_dir: str | os.PathLike) -> bool:
    """Whether anything of a run is in `run_dir`: its history, params, a checkpoint or a seed run;
    not a history that a run wrote at its start and ended before its first epoch's checkpoint."""
    figures_and_logs = {*FIGURE_FILES, SWEEP_FIGURE, TENSORBOARD_DIR, PROFILE_DIR}
    run_dir = Path(run_dir)
    held = [p for p in _written_by_a_run(run_dir) if p.relative_to(run_dir).parts[0] not in figures_and_logs]
    if held == [run_dir / HISTORY_FILE]:
        try:
            return hist.epochs_done(read_record(run_dir).history) > 0
        except RunError:
            return True
    return bool(held)


def _remove_run(run_dir: Path) -> None:
    """Delete what training wrote in `run_dir` (`_written_by_a_run`), a link as a link, then the
    folders it made if nothing else is left in them: a file of the user's there stays, and so does
    its folder."""
    written = _written_by_a_run(run_dir)
    for path in written:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)  # (rmtree removes links inside as links)
        else:
            path.unlink(missing_ok=True)
    model_dirs = {p.relative_to(run_dir).parts[0] for p in written} - {CHECKPOINT_DIR, TENSORBOARD_DIR, PROFILE_DIR}
    for folder in (CHECKPOINT_DIR, *sorted(model_dirs), TENSORBOARD_DIR, PROFILE_DIR):
        if (run_dir / folder).is_symlink() or not (run_dir / folder).is_dir():
            continue
        for parent, dirs, _ in sorted(os.walk(run_dir / folder), key=lambda w: len(Path(w[0]).parts), reverse=True):
            try:
                os.rmdir(parent)  # only when empty
            except OSError:
                pass


def _lock(run_dir: Path) -> int:
    """Hold `run_dir`'s lock file for this process: a RunError if another process holds it.
    The OS releases it when the process ends, however it ends."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise RunError(f"{run_dir}: cannot write here ({e.strerror})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise RunError(f"{run_dir} is in use by another mnist-jax process (pid {holder}); wait for it to end "
                       f"or pick another --run-dir") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as e:  # a full disk: no empty lock file is left behind
        (run_dir / LOCK_FILE).unlink(missing_ok=True)
        os.close(fd)
        raise RunError(f"{run_dir}: cannot write here ({e.strerror})") from None
    return fd


@contextlib.contextmanager
def _taking_lock(run_dir: Path, primary: bool) -> Iterator[int | None]:
    """The run directory's lock (the primary process's only) for the work of the block, which keeps
    it; released again if the block fails."""
    fd = _lock(run_dir) if primary else None
    try:
        yield fd
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise


def _write(path: Path, content: bytes) -> None:
    """`files.write_atomic`, a failure of the OS (disk full, permissions) being a one-line RunError:
    the file then keeps its old content, or stays absent."""
    try:
        path.parent.mkdir(exist_ok=True)
        write_atomic(path, content)
    except OSError as e:
        raise RunError(f"{path}: cannot write ({e.strerror or e})") from None


def _remove_temporaries(run_dir: Path) -> None:
    """Half-written files that a killed process left (see files.write_atomic); only the lock holder
    calls this, so none of them is being written."""
    for leftover in (*run_dir.glob(".*.tmp"), *(p for d in _model_dirs(run_dir) for p in d.glob(".*.tmp"))):
        leftover.unlink(missing_ok=True)


class RunDir:
    """A run directory being written by training. Build one with `RunDir.create` or `RunDir.resume`."""

    def __init__(self, path: str | os.PathLike, config: TrainConfig, *, primary: bool = True,
                 saved: RunRecord | None = None, lock_fd: int | None = None):
        self.path = Path(path)
        self.config = config
        self.primary = primary
        self.saved = saved  # for a resumed run: its history.json as it was found
        self._lock_fd = lock_fd
        # Recorded in history.json beside the history: the held-out examples ("validation_indices"),
        # how the unsure threshold was chosen ("unsure_rule").
        self.notes: dict[str, Any] = {}

    @classmethod
    def create(cls, path: str | os.PathLike, config: TrainConfig, *, overwrite: bool = False,
               primary: bool = True) -> RunDir:
        """A new run in `path`, locked until `close()`. A directory that holds a run, or that another
        process is writing, is refused; with `overwrite` the earlier run's files are deleted (by the
        primary process only), so none can be mistaken for ours."""
        path = Path(path)
        _check_utf8(path)
        check_writable(path, room=PATH_ROOM)
        with _taking_lock(path, primary) as lock_fd:
            if holds_a_run(path):
                if not overwrite:
                    raise RunError(f"{path} already holds a run; --resume it, pick another --run-dir, "
                                   f"or pass --overwrite")
                if primary:
                    _remove_run(path)
            if primary:
                _remove_temporaries(path)
        run = cls(path, config, primary=primary, lock_fd=lock_fd)
        # Recorded before the first epoch: a checkpoint committed before the first history write
        # (a hook or a profile failing at epoch 0) is then resumable, as every later one is.
        run.write_history(hist.empty())
        return run

    @classmethod
    def resume(cls, path: str | os.PathLike, given: Mapping[str, Any], *, primary: bool = True) -> RunDir:
        """The run in `path` to train on, locked until `close()`; its config is the saved one with
        the `given` settings that a resume may change (see `config.resume_config`)."""
        path = Path(path)
        _check_utf8(path)
        if primary:  # (the other processes of a multi-host run find it locked by process 0)
            check_not_in_use(path)  # before judging files that their writer may be about to write
        started = (path / CHECKPOINT_DIR).is_dir() or (path / LOCK_FILE).exists()
        if started and not (path / HISTORY_FILE).exists():
            raise RunError(f"{path}: no epoch of this run was completed, so there is nothing to resume; "
                           f"start it again with --run-dir {path} --overwrite")
        parent = _multi_seed_parent(path)
        if parent is not None:
            member = "one model's copy of the sweep" if "=" in path.absolute().name else "one seed's copy of the run"
            raise RunError(f"{path} is {member} {parent}; resume {parent} instead")
        read_record(path)  # a directory that is no run is named as such before anything is written there
        check_writable(path, room=PATH_ROOM)
        with _taking_lock(path, primary) as lock_fd:
            saved = read_record(path)  # again, under the lock: its last holder may have written it since
            config = resume_config(saved.config, dict(given))
            if primary:
                _remove_temporaries(path)
        return cls(path, config, primary=primary, saved=saved, lock_fd=lock_fd)

    def close(self) -> None:
        """Release the run directory's lock."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def checkpoint_dir(self) -> Path:
        return self.path / CHECKPOINT_DIR

    def write_history(self, history: hist.History) -> None:
        """history.json of the run so far, not finished, with where it runs (its cost unknown yet)."""
        if self.primary:
            _write(self.path / HISTORY_FILE, _history_json(self.config, history, False, environment.system_info(None),
                                                           notes=self.notes))

    def finish(self, history: hist.History, params: Params, system: dict[str, Any],
               files: Mapping[str, bytes] | None = None, doubts: Sequence[Any] | None = None) -> None:
        """Write the final params, each seed's own run, `files` (the figures), and then, last of all,
        history.json marked finished: a run marked finished has everything. `doubts`: each model's
        `inference.Doubts`, its threshold of "unsure" and its rule of "not a digit" (novelty.msgpack)."""
        if not self.primary:
            return
        params = jax.tree_util.tree_map(np.asarray, params)
        content = flax.serialization.to_bytes(params)
        doubts = list(doubts or [])
        unsure_below = [d.unsure_below for d in doubts] if any(d.unsure_below is not None for d in doubts) else []
        _write(self.path / PARAMS_FILE, content)
        if self.config.models > 1:
            names = model_dir_names(self.config)
            for i, member_config in enumerate(self.config.model_configs()):
                member_dir = self.path / names[i]
                member_content = flax.serialization.to_bytes(jax.tree_util.tree_map(lambda p: p[i], params))
                _write(member_dir / PARAMS_FILE, member_content)
                not_a_digit = _write_rule(member_dir, doubts[i] if doubts else None)
                _write(member_dir / HISTORY_FILE, _history_json(
                    member_config, hist.seed_history(history, i), True, system, sha256(member_content),
                    unsure_below[i] if unsure_below else None, not_a_digit=not_a_digit))
        for name, content_ in (files or {}).items():
            _write(self.path / name, content_)
        not_a_digit = _write_rule(self.path, doubts[0]) if self.config.models == 1 and doubts else None
        thresholds = (unsure_below[0] if len(unsure_below) == 1 else list(unsure_below)) if unsure_below else None
        _write(self.path / HISTORY_FILE, _history_json(self.config, history, True, system, sha256(content), thresholds,
                                                       self.notes, not_a_digit))


def write_doubts(run_dir: str | os.PathLike, doubts: Any, notes: Mapping[str, Any]) -> None:
    """A finished run's new `inference.Doubts` (experiment.refit_doubts): novelty.msgpack, then its
    history.json with the new thresholds and `notes`, every other field as it was."""
    path = Path(run_dir) / HISTORY_FILE
    record = json.loads(read_regular(path, MAX_HISTORY_BYTES))
    not_a_digit = _write_rule(Path(run_dir), doubts)
    record = {name: value for name, value in record.items() if name not in ("unsure_below", "not_a_digit")}
    record.update(notes)
    if doubts.unsure_below is not None:
        record["unsure_below"] = doubts.unsure_below
    if not_a_digit is not None:
        record["not_a_digit"] = not_a_digit
    _write(path, (json.dumps(record, indent=1) + "\n").encode())


def _write_rule(model_dir: Path, doubts: Any) -> dict[str, Any] | None:
    """A model's rule of "not a digit" into its novelty.msgpack; what history.json says of it."""
    if doubts is None or doubts.rule is None:
        return None
    content = novelty.to_bytes(doubts.rule)
    _write(model_dir / novelty.FILE, content)
    return {**doubts.rule.record(), "novelty_sha256": sha256(content)}


def _multi_seed_parent(path: Path) -> Path | None:
    """The multi-seed run that `path` is a seed-S copy of, if it is one."""
    if not _MODEL_DIR.fullmatch(path.absolute().name):
        return None
    try:
        parent = json.loads(read_regular(path.absolute().parent / HISTORY_FILE, MAX_HISTORY_BYTES))
        return path.parent if parent["config"]["seeds"] > 1 or parent["config"].get("sweep") else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _check_utf8(run_dir: Path) -> None:
    """A RunError for a path whose bytes are not UTF-8: Orbax keeps the checkpoints' paths as text
    and failed at the first save, an epoch in."""
    try:
        os.fsencode(run_dir.absolute()).decode("utf-8")
    except UnicodeDecodeError:
        raise RunError(f"{run_dir}: the checkpoints need a path that is valid UTF-8; rename it") from None


def check_writable(directory: Path, room: int = 0) -> None:
    """Make `directory` if needed; a RunError if nothing can be written there, or if paths `room`
    bytes longer than its own would pass the OS's limit."""
    try:
        if directory.is_symlink() and not directory.exists():
            raise RunError(f"{directory}: a symbolic link to {os.readlink(directory)}, which does not exist")
        directory.mkdir(parents=True, exist_ok=True)
        if len(os.fsencode(directory.absolute())) + room > os.pathconf(directory, "PC_PATH_MAX"):
            raise RunError(f"{directory}: the path is too long for the files written inside it "
                           f"(keep it under {os.pathconf(directory, 'PC_PATH_MAX') - room} bytes)")
        probe = directory / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except FileExistsError:
        raise RunError(f"{directory}: exists and is not a directory") from None
    except OSError as e:
        raise RunError(f"{directory}: cannot write here ({e.strerror})") from None


def figure_path(run_dir: Path | None, name: str) -> Path:
    """Where a figure redrawn from a run goes: RUN_DIR/NAME, or ./NAME for the bundled run (None),
    whose directory is part of the package. Not into a run that a process is still writing."""
    if not run_dir:
        return Path(name)
    check_not_in_use(run_dir)
    return run_dir / name


def check_not_in_use(run_dir: Path) -> None:
    """A RunError if a process is writing the run in `run_dir` (holds its lock): its files are its own."""
    try:
        fd = os.open(run_dir / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return  # no lock file: no run was ever written here
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        raise RunError(f"{run_dir} is in use by another mnist-jax process (pid {holder}); wait for it to end") from None
    finally:
        os.close(fd)


def copy_figures(run_dir: Path, figures_dir: Path, *, seeds: int, sweep: bool = False) -> list[tuple[Path, bool]]:
    """Copy a finished run's figures into `figures_dir`: each copy, and whether it replaced a file
    (the repository's own figures/, say). A run of several seeds draws another history figure, which
    goes to training_seeds.svg so that a single run's training.svg stays; a sweep copies its sweep.svg."""
    names = ({SWEEP_FIGURE: SWEEP_FIGURE} if sweep else {"training.svg": "training_seeds.svg"} if seeds > 1
             else {name: name for name in FIGURE_FILES})
    copied = []
    for source, target in names.items():
        copied.append((figures_dir / target, (figures_dir / target).exists()))
        _write(figures_dir / target, (run_dir / source).read_bytes())
    return copied


def read_record(run_dir: str | os.PathLike) -> RunRecord:
    """history.json of a run: config, history, whether it finished, where it ran; every field
    checked, so that a hand edit is a one-line RunError naming the field, not a traceback later."""
    path = Path(run_dir) / HISTORY_FILE
    try:
        record = json.loads(read_regular(path, MAX_HISTORY_BYTES))
    except FileNotFoundError:
        raise RunError(f"{path}: not found (is {run_dir} a run directory of mnist-jax train?)") from None
    except IsADirectoryError:
        raise RunError(f"{path}: is a directory, not a run history") from None
    except RecursionError:
        raise RunError(f"{path}: not a valid run history (JSON nested too deeply)") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RunError(f"{path}: cannot read ({getattr(e, 'strerror', None) or e})") from None
    except ValueError as e:
        raise RunError(f"{path}: not a valid run history (not JSON: {e})") from None
    try:
        if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        for name, kind in (("config", dict), ("history", dict), ("finished", bool), ("system", dict),
                           ("params_sha256", str)):
            if name in record and not isinstance(record[name], kind):
                raise ValueError(f"{name} must be {'true or false' if kind is bool else f'a {kind.__name__}'}, "
                                 f"got {record[name]!r:.40}")
        for name in ("config", "history"):
            if name not in record:
                raise ValueError(f"{name} is missing")
        try:
            config = TrainConfig.from_dict(record["config"])
        except ConfigError as e:
            raise ValueError(f"config: {e}") from None
        history = hist.from_saved(record["history"], config)  # upgraded first: older runs lack newer metrics
        unsure_below = record.get("unsure_below")
        if config.models == 1 and unsure_below is not None and not (
                isinstance(unsure_below, (int, float)) and not isinstance(unsure_below, bool)
                and 0 <= unsure_below <= 1):
            raise ValueError(f"unsure_below must be a probability (0 ... 1), got {quoted(unsure_below)}")
        not_a_digit = record.get("not_a_digit")
        if not_a_digit is not None and not (
                isinstance(not_a_digit, dict) and isinstance(not_a_digit.get("novelty_sha256"), str)
                and isinstance(not_a_digit.get("doubt_above"), (int, float))
                and not isinstance(not_a_digit.get("doubt_above"), bool)):
            raise ValueError("not_a_digit must hold doubt_above (a number) and novelty_sha256")
    except ValueError as e:
        raise RunError(f"{path}: not a valid run history: {e}") from None
    return RunRecord(config, history, record.get("finished", True),
                     record.get("system", {}), record.get("params_sha256"),
                     unsure_below if config.models == 1 else None, not_a_digit if config.models == 1 else None)


def load_doubts(run_dir: str | os.PathLike | None, record: RunRecord):
    """The run's `inference.Doubts`: its threshold of "unsure" and, where it has one, its rule of
    "not a digit" from novelty.msgpack (checked against its SHA-256 in history.json)."""
    from mnist_jax.apps.inference import Doubts

    from mnist_jax.data.datasets import DATASETS

    thing = DATASETS[record.config.dataset].thing
    if record.not_a_digit is None:
        return Doubts(record.unsure_below, thing=thing)
    path = Path(BUNDLED_RUN if run_dir is None else run_dir) / novelty.FILE
    try:
        content = read_regular(path, 64 << 20)
        if sha256(content) != record.not_a_digit["novelty_sha256"]:
            raise RunError(f"{path}: damaged (its SHA-256 does not match the one in {HISTORY_FILE})")
        features = novelty.features_for(record.config)
        if features is None:
            raise ValueError("its network's features cannot be read")
        return Doubts(record.unsure_below, novelty.from_bytes(content, record.not_a_digit, features), thing)
    except RunError:
        raise
    except FileNotFoundError:
        raise RunError(f"{path}: not found (history.json says the run has a rule of \"not a digit\")") from None
    except OSError as e:
        raise RunError(f"{path}: cannot read ({e.strerror})") from None
    except ValueError as e:
        raise RunError(f"{path}: {e}") from None


def load_history(run_dir: str | os.PathLike) -> tuple[TrainConfig, hist.History]:
    record = read_record(run_dir)
    return record.config, record.history


def load_params(run_dir: str | os.PathLike, config: TrainConfig, expected_sha256: str | None = None) -> Params:
    """The saved final params; for a multi-seed run, every seed's, stacked on a leading axis.
    With `expected_sha256` (history.json's `params_sha256`), damaged bytes are refused."""
    path = Path(run_dir) / PARAMS_FILE
    template = jax.tree_util.tree_map(lambda p: np.zeros((config.models, *p.shape) if config.models > 1 else p.shape,
                                                         p.dtype), param_shapes(config))
    try:
        # msgpack adds a few bytes per array to the float32s: twice their size is ample.
        content = read_regular(path, 2 * sum(p.nbytes for p in jax.tree_util.tree_leaves(template)) + 65536)
        if expected_sha256 is not None and sha256(content) != expected_sha256:
            raise RunError(f"{path}: damaged (its SHA-256 does not match the one in {HISTORY_FILE})")
        params = flax.serialization.from_bytes(template, content)
    except FileNotFoundError:
        raise RunError(f"{path}: not found") from None
    except OSError as e:
        raise RunError(f"{path}: cannot read ({e.strerror})") from None
    except RunError:
        raise
    except Exception as e:  # msgpack raises several unrelated types on bad bytes
        raise RunError(f"{path}: not valid saved params ({type(e).__name__})") from None
    for (where, got), want in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree_util.tree_leaves(template)):
        if np.shape(got) != want.shape:  # from_bytes takes any shape
            raise RunError(f"{path}: not valid saved params ({jax.tree_util.keystr(where)} has shape "
                           f"{np.shape(got)} where the model has {want.shape})")
    return params


def params_phrase(history: hist.History) -> str:
    """Which params a run holds, for a line that reports them."""
    done = len(history["train_loss"])
    return f"params after epoch {done - 1}" if done else "params before any training (the history has no epoch)"


def load_run(run_dir: str | os.PathLike | None = None) -> tuple[TrainConfig, hist.History, Params]:
    """Config, history and params of a run (None: the bundled one): the final params (checked against
    their SHA-256 in history.json), or for an unfinished run the latest checkpoint's (its digest's)."""
    record, params = load_record_and_params(run_dir)
    return record.config, record.history, params


def load_record_and_params(run_dir: str | os.PathLike | None = None) -> tuple[RunRecord, Params]:
    """`load_run`'s, with the whole record of history.json (its unsure threshold, where it ran); for
    an unfinished run, the record's history is the latest checkpoint's."""
    run_dir = BUNDLED_RUN if run_dir is None else run_dir
    record = read_record(run_dir)
    config = record.config
    if config.models > 1:
        what = (f"a sweep of {config.models} models; pass one model's" if config.sweep
                else f"{config.seeds} seeds; pass one seed's")
        raise RunError(f"{run_dir} holds {what} run, e.g. {Path(run_dir) / model_dir_names(config)[0]}")
    if record.finished:
        if record.params_sha256 is None:
            raise RunError(f"{Path(run_dir) / HISTORY_FILE}: no SHA-256 of the params to check them against "
                           f"(written by an older mnist-jax); train the run again")
        return record, load_params(run_dir, config, record.params_sha256)
    from mnist_jax.fast.programs import initial_state
    from mnist_jax.run.checkpoints import Checkpointer, CheckpointError  # Orbax and Optax: only for these

    checkpointer = Checkpointer(Path(run_dir) / CHECKPOINT_DIR, create=False)
    try:
        latest = checkpointer.latest_epoch()
        if latest is None:
            raise CheckpointError(f"{checkpointer.directory}: no checkpoint found")
        state, history = checkpointer.restore(latest, initial_state(config))
    except CheckpointError as e:
        raise RunError(str(e)) from None
    finally:
        checkpointer.close()
    return record._replace(history=hist.upgrade(history, config)), state.params
