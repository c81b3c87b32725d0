"""notebooks/mnist_jax.ipynb: the notebook in JAX. It runs top to bottom in a real kernel (shortened
to one small epoch), its plain-text pair says the same, and its stored outputs (a full 30-epoch run)
are what the package prints for the notebook's settings."""

from __future__ import annotations

import re
from pathlib import Path

from mnist_jax.config import TrainConfig
from mnist_jax.fast import programs
from mnist_jax.networks import model_summary
from mnist_jax.run import history, rundir

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOK, TEXT_FORM = NOTEBOOKS / "mnist_jax.ipynb", NOTEBOOKS / "mnist_jax.pct.py"
LINE = re.compile(r"^\[epoch +\d+\] Train loss: \d+\.\d{4} / accuracy: [01]\.\d{4} \| "
                  r"Test loss: \d+\.\d{4} / accuracy: [01]\.\d{4}$")


def outputs(notebook) -> tuple[list[str], list[str], list[dict]]:
    """Every code cell's printed text, the outputs' MIME types, and the errors."""
    text, kinds, errors = [], [], []
    for cell in notebook.cells:
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.output_type == "stream":
                text.append(output.text)
            elif output.output_type == "error":
                errors.append(output)
            else:
                kinds.extend(output.get("data", {}))
    return text, kinds, errors


def epoch_lines(text: list[str]) -> list[str]:
    return [line for chunk in text for line in chunk.splitlines() if line.startswith("[epoch")]


def test_the_notebook_and_its_text_form_hold_the_same_cells():
    import jupytext

    notebook, text_form = jupytext.read(NOTEBOOK), jupytext.read(TEXT_FORM)
    assert [(c.cell_type, c.source.strip()) for c in notebook.cells] == \
           [(c.cell_type, c.source.strip()) for c in text_form.cells]
    assert len(notebook.cells) >= 20


def test_the_notebook_runs_top_to_bottom_in_a_fresh_kernel(data_dir, small_fits, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    monkeypatch.setenv("MNIST_JAX_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("TFDS_DATA_DIR", str(data_dir))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    for cell in notebook.cells:  # nothing left of the stored run
        if cell.cell_type == "code":
            cell.outputs = []
    # Raises CellExecutionError, naming the cell, if any cell fails.
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    text, kinds, errors = outputs(notebook)
    assert not errors
    # The quick setting is the suite's small one: its cells written out train the package's first epoch.
    assert epoch_lines(text) == [history.format_epoch(0, history.epoch_entry(small_fits[1][1], 0))]
    assert kinds.count("image/svg+xml") == 2  # the history and the classification figures


def test_the_stored_outputs_are_what_the_package_prints_for_the_notebooks_settings():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    text, kinds, errors = outputs(notebook)
    assert not errors and kinds.count("image/svg+xml") == 2
    assert model_summary(programs.initial_state(TrainConfig()).params) + "\n" in text
    # The full default run: 30 lines, the last the same as the run whose weights ship in the package
    # (the same settings, seed and platform give the same history bit for bit).
    record = rundir.read_record(rundir.BUNDLED_RUN)
    assert record.config == TrainConfig()
    lines = epoch_lines(text)
    assert len(lines) == 30 and all(LINE.match(line) for line in lines)
    assert lines[-1] == history.format_epoch(29, history.epoch_entry(record.history, 29))
    assert NOTEBOOK.stat().st_size < 400_000  # SVG figures, no widget state


def test_the_notebook_carries_no_widget_state():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert "widgets" not in notebook.metadata
    assert all("application/vnd.jupyter.widget-view+json" not in output.get("data", {})
               for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs)
