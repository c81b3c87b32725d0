"""A run's history as a table, kept up to date after every epoch: `CsvLog` and `JsonlLog`.

    mnist-jax train --hook mnist_jax.hooks.logs:CsvLog:path=metrics.csv
    mnist-jax train --hook mnist_jax.hooks.logs:JsonlLog:path=metrics.jsonl
    experiment.run(config, "runs/x", extra_hooks=[CsvLog("metrics.csv")])

One row (CSV) or one JSON object per line (JSON Lines) per epoch: `epoch`, then every scalar metric
of `metrics.METRICS` that the history holds (the per-class accuracies left out), in METRICS' order.
In a run of several models (`--seeds N`, `--sweep`) a value is a list with one entry per model:
JSON Lines writes the list; CSV writes one column per model, `KEY_0`, `KEY_1`, ... in the run's
order (a metric the models share, such as `epoch_seconds`, stays one column). A value an older run
did not record is an empty cell, or `null`.

The file is written whole from the run's history after each epoch (and at the start, from the
epochs a resumed run has already done), through a temporary file and a rename
(`files.write_atomic`): a reader never sees half of it, and a resumed run holds each epoch once,
its own history's. In a multi-host run only process 0 writes it.
"""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path
from typing import Any

import jax

from mnist_jax.errors import UserError
from mnist_jax.files import write_atomic
from mnist_jax.hooks import Hook, Start
from mnist_jax.metrics import History, declared, epochs_done


def epoch_rows(history: History) -> list[dict[str, Any]]:
    """One dict per epoch of `history`: `epoch`, then each scalar metric's value (a list per model
    in a run of several)."""
    keys = [m.key for m in declared() if not m.per_class and m.key in history]
    return [{"epoch": epoch, **{key: history[key][epoch] for key in keys}} for epoch in range(epochs_done(history))]


def _flat(row: dict[str, Any]) -> dict[str, Any]:
    """`row` with each list of one value per model spread over columns KEY_0, KEY_1, ..."""
    flat = {}
    for key, value in row.items():
        if isinstance(value, list):
            flat.update({f"{key}_{i}": item for i, item in enumerate(value)})
        else:
            flat[key] = value
    return flat


def csv_text(history: History) -> str:
    """`history` as CSV: a header, then one row per epoch (empty for a history of no epoch)."""
    rows = [_flat(row) for row in epoch_rows(history)]
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def jsonl_text(history: History) -> str:
    """`history` as JSON Lines: one object per epoch."""
    return "".join(json.dumps(row) + "\n" for row in epoch_rows(history))


class _TableLog(Hook):
    """Keeps the file at `path` the run's history as a table, rewritten whole after each epoch."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if self.path.is_dir():
            raise UserError(f"{self.path}: is a folder; give the file to write the log to")

    def text(self, history: History) -> str:
        raise NotImplementedError

    def on_start(self, start: Start) -> None:
        self._write(start.history)  # a resumed run's epochs so far; nothing is left of an earlier log

    def on_epoch(self, epoch: int, record: dict[str, Any], state, history: History) -> None:
        self._write(history)

    def _write(self, history: History) -> None:
        if jax.process_index() != 0:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.path, self.text(history).encode())
        except OSError as e:
            raise UserError(f"{self.path}: cannot write the log ({e.strerror or e})") from None


class CsvLog(_TableLog):
    """The run's history as CSV at `path`: a header, one row per epoch (see the module's doc)."""

    def text(self, history: History) -> str:
        return csv_text(history)


class JsonlLog(_TableLog):
    """The run's history as JSON Lines at `path`: one object per epoch (see the module's doc)."""

    def text(self, history: History) -> str:
        return jsonl_text(history)

