"""The exported classifier (mnist_jax.export, `mnist-jax export`): run where only JAX is, it gives
the package's own numbers."""

import json
import subprocess
import sys

import numpy as np
import pytest

from mnist_jax import cli, inference, rundir
from mnist_jax.model import model_for

# In a fresh process, with JAX and NumPy only: the exported file's outputs for the saved images.
RUN_EXPORTED = """
import json, sys
import jax, numpy as np
exported = jax.export.deserialize(open(sys.argv[1], "rb").read())
images = np.load(sys.argv[2])
outputs = {str(n): np.asarray(exported.call(images[:n])).tolist() for n in (1, 7, len(images))}
print(json.dumps({"outputs": outputs, "imported": sorted(m for m in ("flax", "mnist_jax", "optax") if m in sys.modules)}))
"""


@pytest.mark.parametrize("output", ["probabilities", "logits"])
def test_the_exported_file_runs_with_jax_alone_and_gives_the_packages_numbers(mnist, tmp_path, capsys, output):
    artifact = tmp_path / f"classifier-{output}.jaxexport"
    assert cli.execute(["export", "--out", str(artifact), "--output", output]) == 0
    assert f"Wrote {artifact}" in capsys.readouterr().out
    images = mnist["test"][0][:32]
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run([sys.executable, "-c", RUN_EXPORTED, str(artifact), str(tmp_path / "images.npy")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["imported"] == []  # neither mnist_jax nor Flax nor Optax
    config, _, params = rundir.load_run(rundir.BUNDLED_RUN)
    probabilities = inference.classify(params, images, model_for(config))
    for n, got in report["outputs"].items():
        got = np.asarray(got)
        assert got.shape == (int(n), 10)
        want = probabilities[:int(n)] if output == "probabilities" else np.log(probabilities[:int(n)])
        if output == "logits":  # logits are the log-probabilities up to a constant per image
            got = got - np.log(np.exp(got).sum(1, keepdims=True))
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_an_export_that_cannot_be_written_is_one_line(tmp_path, capsys):
    assert cli.execute(["export", "--out", str(tmp_path / "nowhere" / "x.jaxexport")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x.jaxexport: cannot write (No such file or directory)" in err
