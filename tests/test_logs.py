"""`mnist-jax train --hook MODULE:NAME:KEY=VALUE,...` and the logs shipped ready for it
(mnist_jax.hooks.logs), through the command, on the small setting."""

import csv
import io
import json

import pytest
from conftest import SMALL_FLAGS, a_record
from test_cli import mnist_jax

from mnist_jax import metrics
from mnist_jax.config import TrainConfig
from mnist_jax.hooks import logs
from mnist_jax.run import history as hist

CSV_HOOK = "mnist_jax.hooks.logs:CsvLog:path={}"
JSONL_HOOK = "mnist_jax.hooks.logs:JsonlLog:path={}"


def saved_history(run_dir) -> dict:
    return json.loads((run_dir / "history.json").read_text())["history"]


def csv_rows(path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def test_csv_and_jsonl_logs_hold_each_epoch_once_across_a_resume(data_dir, tmp_path):
    csv_path, jsonl_path, run_dir = tmp_path / "logs" / "metrics.csv", tmp_path / "metrics.jsonl", tmp_path / "run"
    hooks = ["--hook", CSV_HOOK.format(csv_path), "--hook", JSONL_HOOK.format(jsonl_path)]
    code, _, err = mnist_jax("train", "--epochs", 1, *SMALL_FLAGS, "--data-dir", data_dir, "--run-dir", run_dir,
                             "--no-doubts", *hooks)
    assert code == 0, err
    first_csv = csv_rows(csv_path)
    history = saved_history(run_dir)
    assert len(first_csv) == 1 and float(first_csv[0]["test_accuracy"]) == history["test_accuracy"][0]

    code, _, err = mnist_jax("train", "--resume", run_dir, "--epochs", 2, "--data-dir", data_dir, "--no-doubts", *hooks)
    assert code == 0, err
    history = saved_history(run_dir)
    rows, lines = csv_rows(csv_path), [json.loads(line) for line in jsonl_path.read_text().splitlines()]
    assert [r["epoch"] for r in rows] == ["0", "1"] and [line["epoch"] for line in lines] == [0, 1]
    assert rows[0] == first_csv[0]  # the epoch before the resume, once, as it was
    scalars = [m.key for m in hist.METRICS if not m.per_class]
    assert list(rows[0]) == ["epoch", *scalars] and list(lines[0]) == ["epoch", *scalars]
    for epoch in (0, 1):  # repr of a float round-trips; a value the run does not have (no split) is empty
        assert all((float(rows[epoch][k]) if rows[epoch][k] else None) == history[k][epoch] for k in scalars)
        assert all(lines[epoch][k] == history[k][epoch] for k in scalars)
    assert not list(tmp_path.glob("**/.*.tmp"))  # no half-written file left behind


def test_a_run_of_several_seeds_has_a_column_per_seed():
    history = hist.empty()
    for epoch in range(2):
        history = hist.append(history, a_record(2, train_loss=[1.0 - epoch / 4, 1.5], test_accuracy=[0.75, 0.5]))
    rows = list(csv.DictReader(io.StringIO(logs.csv_text(history))))
    assert [r["epoch"] for r in rows] == ["0", "1"]
    assert (rows[1]["train_loss_0"], rows[1]["train_loss_1"], rows[1]["test_accuracy_1"]) == ("0.75", "1.5", "0.5")
    assert "epoch_seconds" in rows[0] and "epoch_seconds_0" not in rows[0]  # shared by the seeds: one column
    assert json.loads(logs.jsonl_text(history).splitlines()[1])["train_loss"] == [0.75, 1.5]


def test_a_value_an_older_run_did_not_record_is_an_empty_cell_and_null(monkeypatch):
    older = hist.append(hist.empty(), a_record())
    grad_norm = metrics.Metric("train_grad_norm", None, "train", older_runs=lambda config: None)
    monkeypatch.setattr(metrics, "METRICS", (*metrics.METRICS, grad_norm))
    history = hist.upgrade(older, TrainConfig())
    assert list(csv.DictReader(io.StringIO(logs.csv_text(history))))[0]["train_grad_norm"] == ""
    assert json.loads(logs.jsonl_text(history))["train_grad_norm"] is None


@pytest.mark.parametrize("spec,message", [
    ("mnist_jax.hooks.logs:CsvLog:path", "--hook mnist_jax.hooks.logs:CsvLog:path: expected KEY=VALUE after CsvLog:, "
                                         "got 'path'"),
    ("mnist_jax.hooks.logs:CsvLog:path=a.csv,path=b.csv", "path is given twice"),
    ("mnist_jax.hooks.logs:CsvLog:path=a.csv,colour=red", "--hook mnist_jax.hooks.logs:CsvLog:path=a.csv,colour=red: "
                                                          "TypeError: "),
    ("mnist_jax.hooks.logs:CsvLog", "--hook mnist_jax.hooks.logs:CsvLog: TypeError: "),
    ("mnist_jax.hooks.logs:CsvLog:path=.", "--hook mnist_jax.hooks.logs:CsvLog:path=.: .: is a folder"),
    ("mnist_jax.hooks.nothing_here:CsvLog:path=a.csv", "ModuleNotFoundError: No module named 'mnist_jax.hooks.nothing_here'"),
    (":CsvLog:path=a.csv", "expected MODULE:NAME or MODULE:NAME:KEY=VALUE"),
])
def test_a_bad_hook_spec_is_one_line_naming_it_before_anything_is_written(spec, message, tmp_path):
    code, out, err = mnist_jax("train", "--hook", spec, "--run-dir", tmp_path / "run")
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("mnist-jax train: error: --hook ") and message in err, err
    assert not (tmp_path / "run").exists()
