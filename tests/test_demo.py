"""The drawing-pad demo (`mnist-jax demo`), served for real on a free local port: a program and a
headless Chromium use it as people do. Needs the demo extra and, for the browser test, Debian's
`chromium` (`.ci/run` installs it; elsewhere that one test is skipped when it is missing).

Set MNIST_JAX_DEMO_SCREENSHOT=figures/demo.png to keep the browser's screenshot (the README's)."""

from __future__ import annotations

import base64
import io
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
from mnist_jax.demo import png_data_url

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from browser import FLAGS as BROWSER_FLAGS  # noqa: E402  (benchmarks/browser.py: Chromium as run here)

DIGIT_PICTURES = Path(__file__).parent / "fixtures" / "digits"
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
    process = subprocess.Popen([sys.executable, "-m", "mnist_jax", "demo", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # the first line says where it serves, once it answers
    if not line.startswith("The drawing pad is at"):
        process.kill()
        pytest.fail(f"the demo did not start: {line}{process.stderr.read()}")
    url = line.split(" at ")[1].split()[0]
    yield {"url": url, "port": port, "process": process}
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0 and out.strip() == "stopped", err


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

    from mnist_jax.images import to_mnist

    client = Client(server["url"], verbose=False)
    seen, bars, status = client.predict(png_data_url(pad_drawing(tmp_path / "pad.png").read_bytes()), api_name="/classify_drawing")
    assert bars["label"] == "7" and status.startswith("The model reads a 7")
    assert np.array_equal(decoded(seen), to_mnist(Image.open(tmp_path / "pad.png"))[..., 0])  # what the model saw
    assert sum(c["confidence"] for c in bars["confidences"]) == pytest.approx(1, abs=1e-5)
    assert len(bars["confidences"]) == 10
    seen, bars, status = client.predict(handle_file(DIGIT_PICTURES / "3-pen-pencil.jpg"), api_name="/classify_picture")
    assert bars["label"] == "3"
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), "white").save(blank)
    seen, bars, status = client.predict(handle_file(blank), api_name="/classify_picture")
    assert seen == "" and status.startswith("No digit found (the image is blank")
    seen, bars, status = client.predict("data:image/png;base64,bm90IGEgcG5n", api_name="/classify_drawing")
    assert seen == "" and status.startswith("That drawing could not be read")
    assert client.predict("", api_name="/classify_drawing")[2].startswith("Draw one digit")  # the pad cleared


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
            page.mouse.move(cx + stroke[0][0] * side, cy + stroke[0][1] * side)
            page.mouse.down()
            for x, y in stroke[1:]:
                page.mouse.move(cx + x * side, cy + y * side, steps=12)
            page.mouse.up()
            expect(page.locator("#status")).to_contain_text("The model reads a 7", timeout=30_000)
            expect(page.locator("#seen img")).to_be_visible()
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


def test_without_the_demo_extra_the_error_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "gradio", None)  # what Python does when a module cannot be imported
    assert cli.execute(["demo", "--port", str(free_port())]) == 2
    assert capsys.readouterr().err == ("mnist-jax demo: error: the demo needs Gradio, which the core install leaves "
                                       "out: pip install 'mnist-jax[demo]' (from a clone: pip install -e '.[demo]')\n")


def test_an_unknown_host_is_a_one_line_error(capsys):
    assert cli.execute(["demo", "--host", "no-such-host.invalid", "--port", str(free_port())]) == 2
    assert capsys.readouterr().err.startswith("mnist-jax demo: error: --host no-such-host.invalid: not an address")
