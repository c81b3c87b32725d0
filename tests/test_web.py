"""The model on a static web page (`mnist-jax export --format web`, mnist_jax.apps.web): the site it
writes, served on 127.0.0.1 and used in headless Chromium as people use it, and its mistakes.

Needs onnxruntime-web from npm (`npm install` in the repository, as package.json pins it) and
Debian's chromium; `.ci/run` installs both, and under CI these tests fail rather than skip without them.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.server
import json
import os
import shutil
import sys
import threading
from pathlib import Path
from urllib.parse import urlsplit

import jax
import numpy as np
import pytest
from conftest import DRAWN_DIGITS, pad_drawing
from PIL import Image

from mnist_jax import cli
from mnist_jax.apps import drawing, images, inference, novelty, web
from mnist_jax.fast import model_for
from mnist_jax.run import rundir

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from browser import FLAGS as BROWSER_FLAGS  # noqa: E402  (benchmarks/browser.py: Chromium as run here)

ORT_DIR = Path(__file__).resolve().parent.parent / "node_modules" / "onnxruntime-web" / "dist"
CHROMIUM = shutil.which("chromium")
DIGIT_PICTURES = Path(__file__).parent / "fixtures" / "digits"
NOT_DIGIT_PICTURES = Path(__file__).parent / "fixtures" / "not-digits"
# The page's probabilities against `mnist-jax predict`'s on the same pixels: onnxruntime-web's
# float32 against XLA's, and at most a grey level apart on a few of the 28x28 input's pixels.
PROBABILITY_TOLERANCE = 1e-4


def _needs(present: bool, what: str):
    if not present:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the web page's tests: {what}")
        pytest.skip(f"{what} is not installed")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The bundled run's site, with onnxruntime-web copied in."""
    _needs(ORT_DIR.is_dir(), "onnxruntime-web (npm install, in the repository)")
    out = tmp_path_factory.mktemp("web") / "site"
    assert cli.execute(["export", "--format", "web", "--out", str(out), "--ort-dir", str(ORT_DIR)]) == 0
    return out


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _serving(directory: Path):
    """`directory` served on 127.0.0.1, as `python -m http.server` serves it: its URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def served(site):
    with _serving(site) as url:
        yield url


@pytest.fixture(scope="module")
def chromium():
    _needs(CHROMIUM is not None, "Debian's chromium (apt install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_FLAGS)
        yield browser
        browser.close()


def _open(chromium, url: str, requested: list[str]):
    """A page of `url` whose every request is recorded in `requested`; any to another host than
    127.0.0.1 is refused, as a machine with no network would."""
    page = chromium.new_page(viewport={"width": 1100, "height": 800})

    def route(r):
        requested.append(r.request.url)
        return r.continue_() if urlsplit(r.request.url).hostname == "127.0.0.1" else r.abort()

    page.route("**/*", route)
    page.goto(url)
    page.wait_for_function("document.body.dataset.state", timeout=30_000)
    return page


def _draw(page, strokes) -> None:
    """Each stroke with the mouse on the pad, waiting for the page's answer after each."""
    box = page.locator("#pad").bounding_box()
    scale = box["width"] / drawing.PAD_SIZE
    for stroke in strokes:
        answers = page.evaluate("Number(document.body.dataset.answers || 0)")
        page.mouse.move(box["x"] + stroke[0][0] * scale, box["y"] + stroke[0][1] * scale)
        page.mouse.down()
        for x, y in stroke[1:]:
            page.mouse.move(box["x"] + x * scale, box["y"] + y * scale, steps=6)
        page.mouse.up()
        page.wait_for_function(f"Number(document.body.dataset.answers || 0) > {answers}", timeout=10_000)


def _page_answer(page) -> dict:
    return page.evaluate("""() => ({
      top: document.querySelector('[data-testid="top-class"]').textContent,
      status: document.querySelector('[data-testid="status"]').textContent,
      doubt: document.querySelector('[data-testid="status"]').dataset.doubt,
      probabilities: [...document.querySelectorAll('#bars li')].map((row) => Number(row.dataset.probability)),
      seen: Array.from(document.getElementById('seen').getContext('2d').getImageData(0, 0, 28, 28).data)
                 .filter((_, i) => i % 4 === 0),
      drawing: document.getElementById('pad').toDataURL('image/png'),
    })""")


def _predicted(paths: list[Path], capsys) -> dict[str, tuple[str, float, str]]:
    """`mnist-jax predict`'s top class, its probability and its verdict ("", "unsure" or "not a digit") for each file."""
    capsys.readouterr()
    assert cli.execute(["predict", *map(str, paths)]) == 0
    lines = capsys.readouterr().out.splitlines()
    return {line.split(": ")[0]: (line.split(": ")[1].split()[0], float(line.split("(")[1].split(")")[0]),
                                  next((v for v in ("unsure", "not a digit") if line.endswith(f"  {v}")), ""))
            for line in lines}


def test_the_site_holds_the_page_the_model_and_onnxruntime_web(site):
    names = sorted(str(p.relative_to(site)) for p in site.rglob("*") if p.is_file())
    assert names == sorted([*web.PAGE_FILES, web.MODEL_FILE, web.MANIFEST_FILE,
                            *(f"{web.ORT_FOLDER}/{name}" for name in web.ORT_FILES)])
    manifest = json.loads((site / web.MANIFEST_FILE).read_text())
    record = rundir.read_record(rundir.BUNDLED_RUN)
    assert manifest["class_names"] == [str(d) for d in range(10)] and manifest["dataset"] == "mnist"
    assert manifest["test_accuracy"] == record.history["test_accuracy"][-1]
    assert manifest["unsure_below"] == record.unsure_below and manifest["pad"] == drawing.PAD_SIZE
    assert manifest["doubts"] == {"unsure": novelty.UNSURE, "not_a_digit": novelty.NOT_A_DIGIT}  # the run's rule
    assert manifest["ort"] == {"version": web.ORT_VERSION, "script": "ort/ort.wasm.min.js", "files": "ort/"}
    html = (site / "index.html").read_text()
    assert '<script src="ort/ort.wasm.min.js"></script>' in html and "http" not in html
    # The pinned digests are those of the files npm installed for package.json's version.
    assert json.loads((ORT_DIR.parent / "package.json").read_text())["version"] == web.ORT_VERSION
    for name, digest in web.ORT_FILES.items():
        assert web.sha384((site / web.ORT_FOLDER / name).read_bytes()) == digest


def test_the_pages_model_sees_and_answers_what_python_does(site):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(site / web.MODEL_FILE))
    config, _, params = rundir.load_run(rundir.BUNDLED_RUN)
    model = model_for(config)
    for name, strokes in DRAWN_DIGITS.items():
        picture = pad_drawing(strokes)
        digit, probabilities, _, verdict = session.run(None, {"ink": np.asarray(picture)[..., 3].copy()})
        assert verdict == 0, name  # doubted neither way
        want = images.to_mnist(picture)
        assert np.abs(digit.astype(int) - want[..., 0].astype(int)).max() <= 1, name
        python = np.asarray(jax.nn.softmax(model.apply(params, want[None]), -1))[0]
        np.testing.assert_allclose(probabilities, python, atol=PROBABILITY_TOLERANCE)
        assert int(np.argmax(probabilities)) == int(name)


def test_chromium_draws_digits_and_the_page_reads_them_as_predict_does(served, chromium, tmp_path, capsys):
    requested = []
    page = _open(chromium, served, requested)
    assert page.evaluate("document.body.dataset.state") == "ready"
    assert page.get_by_test_id("status").text_content() == "Draw a digit on the pad."
    answers, drawings = {}, {}
    for name in ("0", "1", "4", "5", "7"):
        page.locator("#clear").click()
        _draw(page, DRAWN_DIGITS[name])
        answers[name] = _page_answer(page)
        drawings[name] = tmp_path / f"{name}.png"
        drawings[name].write_bytes(base64.b64decode(answers[name]["drawing"].split(",", 1)[1]))
    predicted = _predicted(list(drawings.values()), capsys)
    config, _, params = rundir.load_run(rundir.BUNDLED_RUN)
    model = model_for(config)
    for name, answer in answers.items():
        best, probability, _ = predicted[str(drawings[name])]
        assert best == name  # the mouse's strokes read as the digit they draw
        assert answer["top"] == f"{best} ({answer['probabilities'][int(best)]:.1%})"
        assert answer["status"].startswith(f"The model reads a {best}")
        assert abs(answer["probabilities"][int(best)] - probability) <= 5e-5 + PROBABILITY_TOLERANCE
        # The 28x28 input the page shows is Python's for the same pixels, and so are all ten bars.
        want = images.load_image(drawings[name])[..., 0]
        assert np.abs(np.array(answer["seen"]).reshape(28, 28) - want.astype(int)).max() <= 1, name
        python = np.asarray(jax.nn.softmax(model.apply(params, want[None, ..., None]), -1))[0]
        np.testing.assert_allclose(answer["probabilities"], python, atol=PROBABILITY_TOLERANCE)
    # The bars are drawn as wide as their probabilities: the last digit's top class fills the most.
    widths = page.evaluate("[...document.querySelectorAll('#bars .fill')].map((f) => f.getBoundingClientRect().width)")
    best = int(np.argmax(answers["7"]["probabilities"]))
    assert widths[best] > 0 and all(w < widths[best] for i, w in enumerate(widths) if i != best), widths
    # Cleared, the pad asks for a digit again; an uploaded picture is read as predict reads it.
    page.locator("#clear").click()
    assert page.get_by_test_id("top-class").text_content() == ""
    assert page.get_by_test_id("status").text_content() == "Draw a digit on the pad."
    picture = DIGIT_PICTURES / "3-pen-clean.png"
    count = page.evaluate("Number(document.body.dataset.answers)")
    page.locator("#upload").set_input_files(str(picture))
    page.wait_for_function(f"Number(document.body.dataset.answers) > {count}")
    assert page.get_by_test_id("top-class").text_content().startswith(_predicted([picture], capsys)[str(picture)][0] + " ")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 120), "white").save(blank)
    page.locator("#upload").set_input_files(str(blank))
    page.wait_for_function("document.querySelector('[data-testid=status]').textContent.startsWith('No digit')")
    assert page.get_by_test_id("status").text_content() == ("No digit found in blank.png: the picture is blank, "
                                                            "one colour throughout.")
    assert page.get_by_test_id("top-class").text_content() == ""
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture")
    page.locator("#upload").set_input_files(str(notes))
    page.wait_for_function("document.querySelector('[data-testid=status]').textContent.startsWith('Could not read')")
    assert page.get_by_test_id("status").text_content() == ("Could not read notes.txt: not a picture this browser "
                                                            "can open (PNG, JPEG, ...).")
    page.close()
    assert requested and all(urlsplit(url).hostname == "127.0.0.1" for url in requested), requested


# Uploaded to the page, pictures that the bundled run's rule calls "not a digit" (the letters, the
# scribble), "unsure" (the shape) or neither (letter-01, an l, and the digits).
UPLOADS = [*(NOT_DIGIT_PICTURES / f"{name}.png" for name in ("letter-00", "letter-05", "scribble-27", "scribble-18",
                                                            "letter-01")),
           DIGIT_PICTURES / "7-sans-clean.png", DIGIT_PICTURES / "0-pen-clean.png"]
PAGE_SAYS = {"": "The model reads a ", "unsure": "Unsure: perhaps a ", "not a digit": "Not a digit: "}


def test_chromium_says_not_a_digit_and_unsure_where_predict_does(served, chromium, tmp_path, capsys):
    """The page's verdict on each uploaded picture is `mnist-jax predict`'s on the same pixels (the
    pad's drawing), from the same rule computed in its graph."""
    page = _open(chromium, served, [])
    answers, drawings = [], []
    for picture in UPLOADS:
        count = page.evaluate("Number(document.body.dataset.answers || 0)")
        page.locator("#upload").set_input_files(str(picture))
        page.wait_for_function(f"Number(document.body.dataset.answers) > {count}")
        answers.append(_page_answer(page))
        drawings.append(tmp_path / picture.name)
        drawings[-1].write_bytes(base64.b64decode(answers[-1]["drawing"].split(",", 1)[1]))
    page.close()
    predicted = _predicted(drawings, capsys)
    record, params = rundir.load_record_and_params(None)
    rule = rundir.load_doubts(None, record).rule
    seen = np.stack([images.load_image(path) for path in drawings])
    margins, _ = rule.doubt(rule.features(params, seen), inference.classify(params, seen, model_for(record.config)))
    for answer, path, margin in zip(answers, drawings, np.asarray(margins)):
        best, probability, verdict = predicted[str(path)]
        assert answer["top"].startswith(f"{best} ("), path.name
        # A picture within float rounding of the threshold may fall either way in the two runtimes.
        assert answer["status"].startswith(PAGE_SAYS[verdict]) or abs(margin) < 0.05, (path.name, margin)
        # onnxruntime-web's float32 against XLA's, and at most a grey level apart on a few pixels: 2e-3 here.
        assert abs(float(answer["doubt"]) - margin) < 0.02, (path.name, answer["doubt"], margin)
    assert {verdict for _, _, verdict in predicted.values()} == set(PAGE_SAYS)


def test_a_model_that_does_not_load_is_said_on_the_page(served, chromium):
    page = chromium.new_page()
    page.route("**/model.onnx", lambda r: r.fulfill(status=404, body="not here"))
    page.goto(served)
    page.wait_for_function("document.body.dataset.state")
    assert page.evaluate("document.body.dataset.state") == "failed"
    assert page.get_by_test_id("status").text_content().startswith("Could not load the model (model.onnx): ")
    page.close()


def test_without_ort_dir_the_page_loads_the_pinned_build_checked_by_its_digest(site, chromium, tmp_path):
    files = web.site_files((site / web.MODEL_FILE).read_bytes(), {"run": "r", "dataset": "mnist",
                           "class_names": list("0123456789"), "pad": 280, "brush": 24}, None)
    assert set(files) == {*web.PAGE_FILES, web.MODEL_FILE, web.MANIFEST_FILE}
    html = files["index.html"].decode()
    script = (f'<script src="https://cdn.jsdelivr.net/npm/onnxruntime-web@{web.ORT_VERSION}/dist/ort.wasm.min.js" '
              f'integrity="sha384-{web.sha384((ORT_DIR / "ort.wasm.min.js").read_bytes())}" crossorigin="anonymous">')
    assert script in html
    # With no network the page says what it could not load, and the pad stays usable to draw on.
    web.write_site(tmp_path / "cdn", files)
    with _serving(tmp_path / "cdn") as url:
        page = _open(chromium, url, [])
        assert page.evaluate("document.body.dataset.state") == "failed"
        assert page.get_by_test_id("status").text_content().startswith(
            f"Could not load onnxruntime-web from {web.ORT_CDN}ort.wasm.min.js")
        page.close()


def test_export_mistakes_are_one_line_and_write_nothing(tmp_path, capsys):
    (tmp_path / "theirs").mkdir()
    (tmp_path / "theirs" / "notes.txt").write_text("mine")
    (tmp_path / "theirs" / "index.html").write_text("mine")  # a file the site would replace: refused
    (tmp_path / "a-file").write_text("mine")
    (tmp_path / "link").symlink_to(tmp_path / "theirs")
    (tmp_path / "ort").mkdir()
    (tmp_path / "ort" / "ort.wasm.min.js").write_text("// another version")
    cases = [
        (["--out", str(tmp_path / "theirs")], "index.html: the site would replace it"),
        (["--out", str(tmp_path / "a-file")], "is a file; give a folder for the site"),
        (["--out", str(tmp_path / "link")], "is a symbolic link"),
        (["--out", str(rundir.BUNDLED_RUN / "site")], "is inside"),
        (["--out", str(tmp_path / "new"), "--ort-dir", str(tmp_path / "ort")],
         f"ort.wasm.min.js: not onnxruntime-web {web.ORT_VERSION}'s (its SHA-384 differs); npm install"),
        (["--out", str(tmp_path / "new"), "--ort-dir", str(tmp_path / "nowhere")], "ort.wasm.min.js: not found; npm install"),
        (["--out", str(tmp_path / "new"), "--output", "logits"], "--format web shows probabilities"),
    ]
    for argv, message in cases:
        assert cli.execute(["export", "--format", "web", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err, (argv, err)
    assert cli.execute(["export", "--out", str(tmp_path / "x.onnx"), "--ort-dir", str(ORT_DIR)]) == 2
    assert "--ort-dir is for --format web" in capsys.readouterr().err
    assert (tmp_path / "theirs" / "notes.txt").read_text() == "mine" and (tmp_path / "a-file").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file", "link", "ort", "theirs"]


def test_a_fashion_mnist_runs_page_names_its_classes(tmp_path, capsys):
    # The bundled weights, relabelled as a Fashion-MNIST run without a rule of doubt (as runs older
    # than it): the page's bars take the run's classes, and its model has no doubts to give.
    run = tmp_path / "fashion-run"
    shutil.copytree(rundir.BUNDLED_RUN, run)
    record = json.loads((run / "history.json").read_text())
    record["config"]["dataset"] = "fashion_mnist"
    del record["not_a_digit"]
    (run / "history.json").write_text(json.dumps(record))
    assert cli.execute(["export", str(run), "--format", "web", "--out", str(tmp_path / "site")]) == 0
    assert f"onnxruntime-web {web.ORT_VERSION} from {web.ORT_CDN}" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "site" / web.MANIFEST_FILE).read_text())
    assert manifest["class_names"][0] == "T-shirt/top" and manifest["dataset"] == "fashion_mnist"
    assert manifest["thing"] == "fashion article"  # the page says "Not a fashion article"
    assert manifest["run"] == "fashion-run" and not (tmp_path / "site" / web.ORT_FOLDER).exists()
    assert manifest["doubts"] is None and manifest["unsure_below"] == record.get("unsure_below")
    import onnxruntime

    session = onnxruntime.InferenceSession(str(tmp_path / "site" / web.MODEL_FILE))
    assert [o.name for o in session.get_outputs()] == ["digit", "probabilities"]


def test_package_json_names_the_project_as_its_lock_does():
    """npm install takes an unnamed package's name from its folder and rewrites the tracked lock to match."""
    root = Path(__file__).resolve().parent.parent
    package = json.loads((root / "package.json").read_text())
    lock = json.loads((root / "package-lock.json").read_text())
    assert package["name"] == "mnist-jax" and package["private"] is True
    assert lock["name"] == lock["packages"][""]["name"] == package["name"]
    assert lock["packages"][""]["dependencies"] == package["dependencies"]
