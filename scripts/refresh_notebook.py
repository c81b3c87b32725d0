"""Run notebooks/mnist_jax.ipynb top to bottom in a fresh kernel and store its outputs in place.

    pip install -e ".[notebook]" && python scripts/refresh_notebook.py     # the full 30 epochs

The stored outputs are what tests/test_notebook.py checks against the package (the model summary,
30 epoch lines, the last one the bundled run's). Takes as long as `python scripts/train.py` (about
13 minutes on 2 AMD EPYC cores). Execution timestamps are left out, so that the file changes only
where an output does.
"""

import sys
from pathlib import Path

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "mnist_jax.ipynb"


def main() -> int:
    import nbclient
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=3600, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
    notebook.metadata.pop("widgets", None)
    nbformat.write(notebook, NOTEBOOK)
    print(f"Wrote {NOTEBOOK}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
