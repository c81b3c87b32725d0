"""The drawing-pad demo (`mnist-jax demo`), served for real on a free local port: a program and a
headless Chromium use it as people do. Needs the demo extra and, for the browser test, Debian's
`chromium` (`.ci/run` installs it; elsewhere that one test is skipped when it is missing).

Set MNIST_JAX_DEMO_SCREENSHOT=figures/demo.png to keep the browser's screenshot (the README's)."""

from __future__ import annotations

import base64
import functools
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from mnist_jax import cli
from mnist_jax.apps.demo import png_data_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from browser import FLAGS as BROWSER_FLAGS  # noqa: E402  (benchmarks/browser.py: Chromium as run here)

DIGIT_PICTURES = Path(__file__).parent / "fixtures" / "digits"
NOT_DIGIT_PICTURES = Path(__file__).parent / "fixtures" / "not-digits"
CHROMIUM = shutil.which("chromium")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    """`mnist-jax demo` in its own process, stopped at the end with SIGTERM, as a service manager
    stops a server (Ctrl-C takes the same path, but a test runner's workers may ignore it)."""
    port = free_port()
    # On every interface, as `--host 0.0.0.0` serves a pad to a classroom; the tests use 127.0.0.1.
    process = subprocess.Popen([sys.executable, "-m", "mnist_jax", "demo", "--port", str(port), "--host", "0.0.0.0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # the first line says where it serves, once it answers
    if not line.startswith("The drawing pad is at"):
        process.kill()
        pytest.fail(f"the demo did not start: {line}{process.stderr.read()}")
    url = line.split(" at ")[1].split()[0]
    assert url == f"http://127.0.0.1:{port}"  # what to open here, not http://0.0.0.0:PORT
    yield {"url": url, "port": port, "process": process}
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0 and out.strip() == "stopped", err
    assert err == "warning: serving on 0.0.0.0, so other machines that can reach this one can use the pad too\n"


def pad_drawing(path: Path) -> Path:
    """A 7 drawn in black on the transparent pad, as the page sends it (a PNG)."""
    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(image).line([(70, 50), (210, 50), (120, 240)], fill=(0, 0, 0, 255), width=24, joint="curve")
    image.save(path)
    return path


def decoded(url: str) -> np.ndarray:
    assert url.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))))


def test_a_client_sends_a_drawing_and_a_picture_and_gets_the_right_class(server, tmp_path):
    from gradio_client import Client, handle_file

    from mnist_jax.apps.images import to_mnist

    client = Client(server["url"], verbose=False)
    seen, evidence, bars, status = client.predict(png_data_url(pad_drawing(tmp_path / "pad.png").read_bytes()),
                                                  api_name="/classify_drawing")
    assert bars["label"] == "7" and status.startswith("The model reads a 7")
    digit = to_mnist(Image.open(tmp_path / "pad.png"))
    assert np.array_equal(decoded(seen), digit[..., 0])  # what the model saw
    # Where its answer comes from: red and blue only on the stroke, the paper white.
    shown = decoded(evidence)
    assert shown.shape == (28, 28, 3) and np.all(shown[digit[..., 0] == 0] == 255)
    assert (shown[..., 0] > shown[..., 2] + 60).sum() >= 5  # some pixels are strong evidence for the 7
    assert sum(c["confidence"] for c in bars["confidences"]) == pytest.approx(1, abs=1e-5)
    assert len(bars["confidences"]) == 10
    seen, evidence, bars, status = client.predict(handle_file(DIGIT_PICTURES / "3-pen-pencil.jpg"),
                                                  api_name="/classify_picture")
    assert bars["label"] == "3"
    # The demo doubts what the run doubts: a letter is not a digit, as `mnist-jax predict` says.
    status = client.predict(handle_file(NOT_DIGIT_PICTURES / "letter-00.png"), api_name="/classify_picture")[3]
    assert status.startswith("Not a digit: it looks like none of the digits the model learned"), status
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(blank)
    seen, evidence, bars, status = client.predict(handle_file(blank), api_name="/classify_picture")
    assert seen == evidence == "" and status.startswith("No digit found (the image is blank")
    seen, evidence, bars, status = client.predict("data:image/png;base64,bm90IGEgcG5n", api_name="/classify_drawing")
    assert seen == evidence == "" and status == ("Could not read the drawing: not an image file Pillow can read "
                                                 "(PNG, JPEG, ...).")
    assert client.predict("", api_name="/classify_drawing")[3].startswith("Draw one digit")  # the pad cleared


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                    reason="Debian's chromium is not installed (apt install chromium); CI installs it")
def test_chromium_draws_a_seven_on_the_pad_and_the_page_reads_it(server, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM is not None, "CI must run the browser test: install Debian's chromium"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=BROWSER_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 900})
            page.goto(server["url"])
            canvas = page.locator("#pad canvas")
            expect(canvas).to_be_visible(timeout=30_000)
            box = canvas.bounding_box()
            cx, cy, side = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, box["width"]
            stroke = [(-0.25, -0.3), (0.25, -0.3), (0.1, -0.05), (-0.05, 0.3)]  # a 7, in one stroke
            # Gradio's pad shows its canvas before it listens: a stroke drawn that early is lost (once
            # in a clean clone's suite). The 7 is drawn again over itself, as a user would, twice at most.
            for attempt in range(3):
                page.mouse.move(cx + stroke[0][0] * side, cy + stroke[0][1] * side)
                page.mouse.down()
                for x, y in stroke[1:]:
                    page.mouse.move(cx + x * side, cy + y * side, steps=12)
                page.mouse.up()
                try:
                    expect(page.locator("#status")).to_contain_text("The model reads a 7", timeout=15_000)
                    break
                except AssertionError:
                    if attempt == 2:
                        raise
            expect(page.locator("#seen img")).to_be_visible()
            expect(page.locator("#evidence img")).to_be_visible()
            expect(page.locator("#bars")).to_contain_text("7")
            screenshot = tmp_path / "demo.png"
            page.screenshot(path=screenshot, full_page=True)
            if os.environ.get("MNIST_JAX_DEMO_SCREENSHOT"):
                shutil.copy(screenshot, os.environ["MNIST_JAX_DEMO_SCREENSHOT"])
            page.locator("#pad .clear").click()
            expect(page.locator("#status")).to_contain_text("Draw one digit")
        finally:
            browser.close()


def test_a_taken_port_is_a_one_line_error(server, capsys):
    assert cli.execute(["demo", "--port", str(server["port"])]) == 2
    assert capsys.readouterr().err == (f"mnist-jax demo: error: cannot serve on 127.0.0.1 port {server['port']}: "
                                       f"already in use; pick another with --port\n")


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header says width x height and whose pixels end at once: what a decompression
    bomb looks like until it is decoded."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@functools.cache
def http_client():
    """One HTTP client for every request: each new one loads the system's CA certificates (5 s of
    the flood test's CPU time when each request made its own)."""
    import httpx

    return httpx.Client()


def request_body(value) -> bytes:
    """The JSON that a request to the demo's API sends for `value`."""
    return json.dumps({"data": [value]}).encode()


def call(url: str, api: str, value=None, timeout: float = 120, *, body: bytes | None = None) -> tuple[int, object]:
    """One request to the demo's API, as any HTTP client makes it, of `value` or of an encoded
    `request_body`: (status, the outputs or the reply's text)."""
    client = http_client()
    response = client.post(f"{url}/gradio_api/call/{api}", content=request_body(value) if body is None else body,
                           headers={"Content-Type": "application/json"}, timeout=timeout)
    if response.status_code != 200:
        return response.status_code, response.text
    result = client.get(f"{url}/gradio_api/call/{api}/{response.json()['event_id']}", timeout=timeout)
    events = [line[len("data: "):] for line in result.text.splitlines() if line.startswith("data: ")]
    return result.status_code, json.loads(events[-1]) if events else result.text


def test_oversized_and_malformed_inputs_are_refused_before_they_are_decoded(server, tmp_path):
    from gradio_client import Client, handle_file

    status, reply = call(server["url"], "classify_drawing", png_data_url(b"x" * 3_000_000))
    assert status == 413 and reply == "request too large: at most 2 MB"
    for value, message in ((png_data_url(png_header_only(20_000, 20_000)), "400000000 pixels, more than the 50"),
                           ("data:text/plain;base64,aGVsbG8=", "not an image data URL"),
                           ({"not": "a string"}, "expected an image data URL, got dict")):
        status, outputs = call(server["url"], "classify_drawing", value)
        assert status == 200 and outputs[0] == outputs[1] == "" and message in outputs[3], outputs
    (tmp_path / "huge.png").write_bytes(png_header_only(10_000, 10_000))  # 120 bytes that decode to 100 MP
    seen, _, bars, status = Client(server["url"], verbose=False).predict(handle_file(tmp_path / "huge.png"),
                                                                         api_name="/classify_picture")
    assert seen == "" and status == ("Could not read the upload: 10000 x 10000 pixels, more than the 50 megapixels "
                                     "accepted; scale it down first.")


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_floods_of_requests_are_all_answered_and_the_memory_comes_back(server):
    """Floods of concurrent requests, each flood half oversized (30 MB data URLs) and half drawings
    of 1.6 MB: each request gets its answer or a refusal, and the server's memory after the floods
    stays within 250 MB of where it was. MNIST_JAX_SOAK_FLOODS=20 soaks longer (the suite: 2)."""
    from concurrent.futures import ThreadPoolExecutor

    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (1100, 1100), dtype=np.uint8))
    buffer = io.BytesIO()
    noise.save(buffer, "PNG")
    large, oversized = png_data_url(buffer.getvalue()), "data:image/png;base64," + "A" * 30_000_000
    assert len(large) < 2_000_000
    call(server["url"], "classify_drawing", large)  # the decoding and the model's program warmed up
    before = rss_bytes(server["process"].pid)
    bodies = [request_body(large), request_body(oversized)] * 8  # 30 MB of JSON, encoded once
    with ThreadPoolExecutor(16) as pool:
        for _ in range(int(os.environ.get("MNIST_JAX_SOAK_FLOODS", 2))):
            replies = list(pool.map(lambda body: call(server["url"], "classify_drawing", body=body), bodies))
            for (status, outputs), sent in zip(replies, bodies):
                if sent is bodies[1]:
                    assert status == 413
                else:  # answered, or turned away by the bounded queue
                    assert status == 200 and ("only noise" in str(outputs) or "queue" in str(outputs).lower()), outputs
    assert rss_bytes(server["process"].pid) - before < 250_000_000


def test_without_the_demo_extra_the_error_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # what Python does when a module cannot be imported
    assert cli.execute(["demo", "--port", str(free_port())]) == 2
    assert capsys.readouterr().err == ("mnist-jax demo: error: the demo needs Gradio, which the core install leaves "
                                       "out: pip install 'mnist-jax[demo]' (from a clone: pip install -e '.[demo]')\n")


def test_an_unknown_host_is_a_one_line_error(capsys):
    assert cli.execute(["demo", "--host", "no-such-host.invalid", "--port", str(free_port())]) == 2
    assert capsys.readouterr().err.startswith("mnist-jax demo: error: --host no-such-host.invalid: not an address")


def test_the_bars_are_named_after_the_runs_classes(tmp_path):
    from mnist_jax.apps import demo, images
    from mnist_jax.fast import model_for
    from mnist_jax.run import rundir

    config, _, params = rundir.load_run(rundir.BUNDLED_RUN)
    picture = images.read_picture(pad_drawing(tmp_path / "pad.png"), "the drawing")
    _, _, bars, text = demo.read_digit(params, model_for(config), picture)
    assert sorted(bars) == [str(digit) for digit in range(10)] and text.startswith("The model reads a 7 (")
    fashion = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    _, _, named, text = demo.read_digit(params, model_for(config), picture, fashion)
    assert list(named) == list(fashion) and list(named.values()) == [bars[str(c)] for c in range(10)]
    assert text.startswith("The model reads a Sneaker (")


def test_the_pad_says_not_a_digit_and_unsure_where_predict_does(capsys):
    """The run's doubts (`rundir.load_doubts`): the pad's line says them as `mnist-jax predict` does."""
    from mnist_jax.apps import demo, images, inference
    from mnist_jax.fast import model_for
    from mnist_jax.run import rundir

    record, params = rundir.load_record_and_params(None)
    doubts, model = rundir.load_doubts(None, record), model_for(record.config)
    pictures = [NOT_DIGIT_PICTURES / "letter-00.png", NOT_DIGIT_PICTURES / "scribble-18.png", DIGIT_PICTURES / "3-pen-clean.png"]
    capsys.readouterr()
    assert cli.execute(["predict", *map(str, pictures)]) == 0
    said = [line.rsplit("  ", 1)[-1] if line.endswith(("unsure", "not a digit")) else ""
            for line in capsys.readouterr().out.splitlines()]
    assert said == ["not a digit", "unsure", ""]
    texts = [demo.read_digit(params, model, images.read_picture(path, "x"), doubts=doubts)[3] for path in pictures]
    assert texts[0].startswith("Not a digit: it looks like none of the digits the model learned (its guess: a ")
    assert texts[1].startswith("Unsure: perhaps a ") and texts[2].startswith("The model reads a 3 (")
    letter = images.read_picture(pictures[0], "x")
    assert demo.read_digit(params, model, letter)[3].startswith("The model reads a ")  # a run that doubts nothing
    # A run older than the rule: "unsure" below its threshold of the top probability, and nothing else.
    assert demo.read_digit(params, model, letter, doubts=inference.Doubts(unsure_below=1.0))[3].startswith("Unsure: ")
