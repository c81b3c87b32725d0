"""The exported classifier (mnist_jax.apps.export, `mnist-jax export`): run where only JAX is, or only
onnxruntime, it gives the package's own numbers."""

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mnist_jax import cli
from mnist_jax.apps import inference, novelty
from mnist_jax.fast import model_for
from mnist_jax.fast.compiling import quick_jit
from mnist_jax.run import rundir

# In a fresh process, with JAX and NumPy only: the exported file's outputs for the saved images.
RUN_EXPORTED = """
import json, sys
import jax, numpy as np
images = np.load(sys.argv[2])
outputs = {}
for path in sys.argv[1].split(","):
    exported = jax.export.deserialize(open(path, "rb").read())
    outputs[path] = {str(n): np.asarray(exported.call(images[:n])).tolist() for n in (1, len(images))}
print(json.dumps({"outputs": outputs, "imported": sorted(m for m in ("flax", "mnist_jax", "optax") if m in sys.modules)}))
"""

# The same with onnxruntime and NumPy only (no JAX either).
RUN_ONNX = """
import json, sys
import numpy as np, onnxruntime
session = onnxruntime.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
images = np.load(sys.argv[2])
outputs = {str(n): session.run(None, {"images": images[:n]})[0].tolist() for n in (1, 7, len(images))}
names = [i.name for i in session.get_inputs()], [o.name for o in session.get_outputs()]
print(json.dumps({"outputs": outputs, "names": names,
                  "imported": sorted(m for m in ("flax", "jax", "mnist_jax") if m in sys.modules)}))
"""


def _run_fresh(program: str, artifact, images, tmp_path) -> dict:
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run([sys.executable, "-c", program, str(artifact), str(tmp_path / "images.npy")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def _assert_the_packages_numbers(outputs: dict, images, output: str) -> None:
    config, _, params = rundir.load_run(rundir.BUNDLED_RUN)
    model = model_for(config)
    if output == "probabilities":
        want = inference.classify(params, images, model)
    else:
        want = np.asarray(quick_jit(model.apply)(params, images))
    for n, got in outputs.items():
        got = np.asarray(got)
        assert got.shape == (int(n), 10)
        # Logits reach ~25 in size: 1e-5 of that is float32 rounding in a different order of the sums.
        np.testing.assert_allclose(got, want[:int(n)], rtol=1e-5, atol=1e-5)


def test_the_exported_file_runs_with_jax_alone_and_gives_the_packages_numbers(mnist, tmp_path, capsys):
    artifacts = {output: tmp_path / f"classifier-{output}.jaxexport" for output in ("probabilities", "logits")}
    for output, artifact in artifacts.items():
        assert cli.execute(["export", "--out", str(artifact), "--output", output]) == 0
        assert f"Wrote {artifact}" in capsys.readouterr().out
    images = mnist["test"][0][:7]  # batches of 1 and 7: one shape-polymorphic program, two sizes
    report = _run_fresh(RUN_EXPORTED, ",".join(map(str, artifacts.values())), images, tmp_path)
    assert report["imported"] == []  # neither mnist_jax nor Flax nor Optax
    for output, artifact in artifacts.items():
        _assert_the_packages_numbers(report["outputs"][str(artifact)], images, output)


@pytest.mark.parametrize("output,conv,model", [("probabilities", "auto", "linen"), ("logits", "xla", "linen"),
                                               ("probabilities", "xla", "nnx")])
def test_the_onnx_model_runs_in_onnxruntime_and_gives_the_packages_numbers(mnist, tmp_path, capsys, output, conv, model):
    """Whatever formulation the run trained with: the ONNX model computes it as "matmul" does
    (jax2onnx failed on xla's max-pool for linen, and onnxruntime refused NNX's xla pooling)."""
    if importlib.util.find_spec("jax2onnx") is None and not os.environ.get("CI"):
        pytest.skip("jax2onnx is not installed (the onnx extra; CI installs it)")
    run_dir = tmp_path / "run"
    shutil.copytree(rundir.BUNDLED_RUN, run_dir)
    record = json.loads((run_dir / "history.json").read_text())
    record["config"].update(conv=conv, model=model)
    (run_dir / "history.json").write_text(json.dumps(record))
    artifact = tmp_path / f"classifier-{output}.onnx"
    assert cli.execute(["export", str(run_dir), "--format", "onnx", "--out", str(artifact), "--output", output]) == 0
    assert f"Wrote {artifact}" in capsys.readouterr().out
    images = mnist["test"][0][100:132]
    report = _run_fresh(RUN_ONNX, artifact, images, tmp_path)
    assert report["imported"] == []  # neither mnist_jax nor Flax nor JAX
    assert report["names"] == [["images"], [output]]
    _assert_the_packages_numbers(report["outputs"], images, output)


# Non-digits drawn on the pad as ink (0 paper to 255), beside conftest's digits: the bundled run calls
# some of them "not a digit", some "unsure" and reads the others as digits.
NOT_DIGITS = ("letter-00", "letter-02", "letter-05", "shape-06", "scribble-27", "letter-01", "face-06", "scribble-18",
              "shape-08")
VERDICTS = {0: "", novelty.UNSURE: "unsure", novelty.NOT_A_DIGIT: "not a digit"}


def test_the_page_models_doubts_are_the_rules_and_predicts(tmp_path, capsys):
    """The web page's graph computes the run's rule on the 28x28 input it makes: its "doubt" and
    "verdict" outputs are `rule.doubt` of that input, and the verdict is `mnist-jax predict`'s."""
    if importlib.util.find_spec("jax2onnx") is None and not os.environ.get("CI"):
        pytest.skip("jax2onnx is not installed (the onnx extra; CI installs it)")
    import onnxruntime
    from conftest import DRAWN_DIGITS, pad_drawing
    from PIL import Image

    from mnist_jax.apps import export

    record, params = rundir.load_record_and_params(None)
    rule = rundir.load_doubts(None, record).rule
    session = onnxruntime.InferenceSession(export.export_page_onnx(params, record.config, rule))
    assert [o.name for o in session.get_outputs()] == ["digit", "probabilities", "doubt", "verdict"]
    inks = {name: np.asarray(pad_drawing(strokes))[..., 3] for name, strokes in DRAWN_DIGITS.items()}
    for name in NOT_DIGITS:
        picture = Image.open(Path(__file__).parent / "fixtures" / "not-digits" / f"{name}.png").convert("L")
        inks[name] = 255 - np.asarray(picture.resize((280, 280), Image.BILINEAR))
    outputs = [session.run(None, {"ink": np.ascontiguousarray(ink)}) for ink in inks.values()]
    digits = np.stack([digit for digit, *_ in outputs])[..., None]
    probabilities = np.stack([probs for _, probs, *_ in outputs])
    # The page's network gives the rule's features as the run's does, and the graph the rule's doubt.
    features = np.asarray(rule.features(params, digits))
    np.testing.assert_allclose(export.page_features(record.config)(params, digits), features, rtol=1e-5, atol=1e-5)
    # One picture at a time, as the graph was traced: the export left the rule's programs as they were.
    margins, codes = np.array([[np.asarray(a)[0] for a in rule.doubt(features[i:i + 1], probabilities[i:i + 1])]
                               for i in range(len(features))]).T
    codes = codes.astype(int)
    np.testing.assert_allclose([float(m) for *_, m, _ in outputs], margins, rtol=1e-5, atol=1e-4)
    assert [int(v) for *_, v in outputs] == codes.tolist()
    # The verdict is predict's on the same drawing (a transparent PNG, as the pads send it).
    paths = []
    for name, ink in inks.items():
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray(np.stack([np.zeros_like(ink)] * 3 + [ink], -1).astype(np.uint8), "RGBA").save(paths[-1])
    capsys.readouterr()
    assert cli.execute(["predict", *map(str, paths)]) == 0
    said = [next((v for v in ("unsure", "not a digit") if line.endswith(f"  {v}")), "")
            for line in capsys.readouterr().out.splitlines()]
    assert said == [VERDICTS[c] for c in codes.tolist()] and set(said) == set(VERDICTS.values()), said


def test_an_export_that_cannot_be_written_is_one_line(tmp_path, capsys):
    assert cli.execute(["export", "--out", str(tmp_path / "nowhere" / "x.jaxexport")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "x.jaxexport: cannot write (No such file or directory)" in err


def test_an_onnx_export_without_jax2onnx_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "jax2onnx", None)  # `import jax2onnx` now raises ImportError
    artifact = tmp_path / "classifier.onnx"
    assert cli.execute(["export", "--out", str(artifact)]) == 2  # a name ending .onnx asks for ONNX
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install -e '.[onnx]'" in err
    assert not artifact.exists()


def test_an_export_never_replaces_its_run_a_folder_a_link_or_a_device(tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(rundir.BUNDLED_RUN, run_dir)  # a finished run: history.json and params.msgpack
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere.jaxexport")
    cases = [
        ([str(run_dir), "--out", str(run_dir / "params.msgpack")], "is inside"),
        ([str(run_dir), "--out", str(run_dir / "history.json")], "is inside"),
        (["--out", str(rundir.BUNDLED_RUN / "x.jaxexport")], "is inside"),
        (["--out", str(tmp_path) + "/"], "is a folder"),
        (["--out", str(tmp_path / "fifo")], "is not a regular file"),
        (["--out", "/dev/null"], "is not a regular file"),
        (["--out", str(tmp_path / "link")], "is a symbolic link"),
    ]
    for argv, message in cases:
        assert cli.execute(["export", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, err
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before
    assert rundir.load_run(run_dir)[0].epochs == 30  # still whole: its params match their SHA-256
    assert not (tmp_path / "elsewhere.jaxexport").exists() and (tmp_path / "fifo").is_fifo()


def test_an_export_takes_a_name_as_long_as_the_file_system_allows(tmp_path, capsys):
    # Its temporary file, beside it, is named after it: a name of 255 bytes left no room for that.
    longest = tmp_path / ("x" * (255 - len(".jaxexport")) + ".jaxexport")
    assert cli.execute(["export", "--out", str(longest)]) == 0, capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == [longest.name] and longest.stat().st_size > 0
    assert cli.execute(["export", "--out", str(tmp_path / ("x" + longest.name))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.endswith("over the 255 its file system allows (file name too long); "
                                                 "give a shorter one\n"), err
