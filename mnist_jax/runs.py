"""A run directory on disk: history, config and final params, written atomically.

    save_run(run_dir, config, history, params)
    config, history, params = load_run(run_dir)
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from pathlib import Path
from typing import Any
import flax.serialization
import jax

from mnist_jax.model import Classifier, Params, init_params
from mnist_jax.train import HISTORY_KEYS, History, TrainConfig

HISTORY_FILE = "history.json"
PARAMS_FILE = "params.msgpack"


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


def save_run(run_dir: str | os.PathLike, config: TrainConfig, history: History, params: Params,
             system: dict[str, Any] | None = None) -> None:
    """Write params, then history.json (config, history, and `system`: where and how fast it ran)."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(run_dir / PARAMS_FILE, flax.serialization.to_bytes(params))
    # The history goes last: its presence marks a finished run.
    record = {"config": dataclasses.asdict(config), "history": history, "system": system or {}}
    write_atomic(run_dir / HISTORY_FILE, (json.dumps(record, indent=1) + "\n").encode())


def load_history(run_dir: str | os.PathLike) -> tuple[TrainConfig, History]:
    path = Path(run_dir) / HISTORY_FILE
    try:
        record = json.loads(path.read_text())
        config = TrainConfig(**record["config"])
        history = record["history"]
        if not all(isinstance(history[k], list) for k in HISTORY_KEYS):
            raise TypeError
    except FileNotFoundError:
        raise RunError(f"{path}: not found (is {run_dir} a finished run directory?)") from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise RunError(f"{path}: not a valid run history ({type(e).__name__})") from None
    return config, history


def load_params(run_dir: str | os.PathLike, config: TrainConfig) -> Params:
    path = Path(run_dir) / PARAMS_FILE
    template = init_params(Classifier(conv=config.conv), jax.random.key(0))
    try:
        return flax.serialization.from_bytes(template, path.read_bytes())
    except FileNotFoundError:
        raise RunError(f"{path}: not found") from None
    except Exception as e:  # msgpack raises several unrelated types on bad bytes
        raise RunError(f"{path}: not valid saved params ({type(e).__name__})") from None


def load_run(run_dir: str | os.PathLike) -> tuple[TrainConfig, History, Params]:
    config, history = load_history(run_dir)
    return config, history, load_params(run_dir, config)
