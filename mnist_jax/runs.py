"""A run directory on disk, every file written atomically:

    history.json     config, per-epoch history, finished flag, where it ran (rewritten each epoch)
    checkpoints/     Orbax checkpoints of the last few epochs (see mnist_jax.checkpoints)
    params.msgpack   the final params, once the run finished (stacked on a seed axis for --seeds N)
    seed-S/          for a multi-seed run: each seed's own run (history.json, params.msgpack)

    config, history, params = load_run(run_dir)
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import flax.serialization
import jax

from mnist_jax.model import Classifier, Params, init_params
from mnist_jax.train import METRIC_KEYS, History, TrainConfig

HISTORY_FILE = "history.json"
PARAMS_FILE = "params.msgpack"
CHECKPOINT_DIR = "checkpoints"


class RunError(ValueError):
    """A run directory is missing, incomplete or unreadable; the message is one line."""


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same directory and a rename,
    so `path` holds either its old content or all of the new, never a part."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp's 0600 would make outputs private to this user
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class RunRecord(NamedTuple):
    config: TrainConfig
    history: History
    finished: bool
    system: dict[str, Any]


def write_history(run_dir: str | os.PathLike, config: TrainConfig, history: History, *, finished: bool,
                  system: dict[str, Any] | None = None) -> None:
    """history.json: the config, the history so far, whether the run finished, and where it ran."""
    record = {"config": dataclasses.asdict(config), "finished": finished, "history": history, "system": system or {}}
    write_atomic(Path(run_dir) / HISTORY_FILE, (json.dumps(record, indent=1) + "\n").encode())


def save_run(run_dir: str | os.PathLike, config: TrainConfig, history: History, params: Params,
             system: dict[str, Any] | None = None) -> None:
    """Write the final params, then history.json marked finished."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / PARAMS_FILE, flax.serialization.to_bytes(params))
    write_history(run_dir, config, history, finished=True, system=system)


def load_record(run_dir: str | os.PathLike) -> RunRecord:
    path = Path(run_dir) / HISTORY_FILE
    try:
        record = json.loads(path.read_text())
        config = TrainConfig(**record["config"])
        history = record["history"]
        if not all(isinstance(history[k], list) for k in METRIC_KEYS):
            raise TypeError
    except FileNotFoundError:
        raise RunError(f"{path}: not found (is {run_dir} a run directory of scripts/train.py?)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{path}: not a valid run history ({type(e).__name__})") from None
    return RunRecord(config, history, bool(record.get("finished", True)), record.get("system", {}))


def load_history(run_dir: str | os.PathLike) -> tuple[TrainConfig, History]:
    record = load_record(run_dir)
    return record.config, record.history


def load_params(run_dir: str | os.PathLike, config: TrainConfig) -> Params:
    """The saved final params; for a multi-seed run, every seed's, stacked on a leading axis."""
    path = Path(run_dir) / PARAMS_FILE
    template = init_params(Classifier(conv=config.conv), jax.random.key(0))
    if config.seeds > 1:
        template = jax.tree_util.tree_map(lambda p: jax.numpy.stack([p] * config.seeds), template)
    try:
        return flax.serialization.from_bytes(template, path.read_bytes())
    except FileNotFoundError:
        raise RunError(f"{path}: not found") from None
    except Exception as e:  # msgpack raises several unrelated types on bad bytes
        raise RunError(f"{path}: not valid saved params ({type(e).__name__})") from None


def load_run(run_dir: str | os.PathLike) -> tuple[TrainConfig, History, Params]:
    """Config, history and params of a run: the final params, or for an unfinished run the latest checkpoint's.

    A history.json without the `finished` flag (older runs) counts as finished.
    """
    from mnist_jax.checkpoints import CheckpointError, Checkpointer
    from mnist_jax.train import initial_state

    config, history, finished, _ = load_record(run_dir)
    if config.seeds > 1:
        raise RunError(f"{run_dir} holds {config.seeds} seeds; pass one seed's run, "
                       f"e.g. {Path(run_dir) / f'seed-{config.seed}'}")
    if finished:
        return config, history, load_params(run_dir, config)
    template = initial_state(config)
    checkpointer = Checkpointer(Path(run_dir) / CHECKPOINT_DIR, create=False)
    try:
        state, history = checkpointer.restore_latest(template)
    except CheckpointError as e:
        raise RunError(str(e)) from None
    finally:
        checkpointer.close()
    return config, history, state.params
