"""Time using the model: `mnist-jax predict one.png` end to end, the demo's answer to a drawing,
and the static web page's (`mnist-jax export --format web`).

    npm install                                       # onnxruntime-web, for the web page
    python benchmarks/use_latency.py --repeat 5 [--json use.json]

`mnist-jax predict` runs in a child process, first with an empty compilation cache, then `--repeat`
times warm; the demo is served on a free port and answers 4 x `--repeat` drawn digits through
gradio_client and, where Playwright and Debian's chromium are installed, strokes drawn in headless
Chromium (needs the demo extra). Expect on 2 Sapphire Rapids cores: predict ~1.5 s warm, the demo
~65 ms from the pen lifted to the answer on the page (targets: 3 s and 100 ms). The web page is
exported with onnxruntime-web from node_modules, served by http.server and opened `--repeat` times
in a fresh browser context (load: from navigation to the model ready), then drawn on as the demo is.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import browser


def _drawn_seven(path: Path) -> Path:
    """A 7 in black strokes on a transparent 280 x 280 pad, as the demo's pad hands it over."""
    from PIL import Image, ImageDraw

    image = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(image).line([(70, 50), (210, 50), (120, 240)], fill=(0, 0, 0, 255), width=22, joint="curve")
    image.save(path)
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    """`mnist-jax predict one.png` end to end in a child process (its first run with an empty
    compilation cache, then `--repeat` with the cache warm), and the demo's answer to a drawn digit:
    the work in mnist-jax alone, the round trip of a gradio_client request to a served demo, and,
    where Playwright and Debian's chromium are installed, strokes drawn on the page."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5, help="warm predict runs; 4x as many demo requests (default: %(default)s)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this JSON file")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        digit = _drawn_seven(Path(tmp) / "seven.png")
        env = {**os.environ, "JAX_COMPILATION_CACHE_DIR": str(Path(tmp) / "cache")}
        command = [sys.executable, "-m", "mnist_jax", "predict", str(digit)]
        walls = []
        for _ in range(1 + args.repeat):
            start = time.perf_counter()
            subprocess.run(command, env=env, check=True, capture_output=True)
            walls.append(time.perf_counter() - start)
        result = {"predict_cold_cache_seconds": walls[0], "predict_warm_cache_seconds": walls[1:]}
        result.update(_demo_latency(digit, args.repeat * 4, env))
        result.update(_web_latency(Path(tmp), args.repeat, args.repeat * 4))
    print(f"mnist-jax predict one.png: {walls[0]:.2f} s with an empty compilation cache, "
          f"median {statistics.median(walls[1:]):.2f} s warm ({args.repeat} runs)")
    if "demo_round_trip_seconds" in result:
        print(f"demo, a drawn digit: median {1000 * statistics.median(result['demo_round_trip_seconds']):.0f} ms "
              f"round trip through gradio_client, of which "
              f"{1000 * statistics.median(result['demo_server_seconds']):.1f} ms in mnist-jax")
        if "demo_browser_seconds" in result:
            print(f"demo in headless Chromium: loaded (navigation to the pad shown) in median "
                  f"{1000 * statistics.median(result['demo_load_seconds']):.0f} ms (5 fresh loads); median "
                  f"{1000 * statistics.median(result['demo_browser_seconds']):.0f} ms from the pen lifted to the answer on the page")
    else:
        print(f"demo: not measured ({result['demo_skipped']})")
    if "web_load_seconds" in result:
        print(f"web page in headless Chromium: loaded (navigation to model ready) in median "
              f"{1000 * statistics.median(result['web_load_seconds']):.0f} ms ({args.repeat} fresh loads); median "
              f"{1000 * statistics.median(result['web_browser_seconds']):.0f} ms from the pen lifted to the answer, "
              f"of which {statistics.median(result['web_model_seconds']) * 1000:.1f} ms in onnxruntime-web")
    else:
        print(f"web page: not measured ({result.get('web_skipped')})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


def _demo_latency(digit: Path, requests: int, env: dict) -> dict:
    try:
        from gradio_client import Client
    except ImportError:
        return {"demo_skipped": "the demo extra is not installed"}
    from PIL import Image

    from mnist_jax.apps import demo
    from mnist_jax.fast import model_for
    from mnist_jax.run import rundir

    config, _, params = rundir.load_run(rundir.BUNDLED_RUN)
    drawing = demo.png_data_url(digit.read_bytes())
    model = model_for(config)
    demo.read_digit(params, model, Image.open(digit))  # compiled once, as the server does
    server = []
    for _ in range(requests):
        start = time.perf_counter()
        demo.read_digit(params, model, demo.decode_drawing(drawing))
        server.append(time.perf_counter() - start)
    port = _free_port()
    process = subprocess.Popen([sys.executable, "-m", "mnist_jax", "demo", "--port", str(port)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        process.stdout.readline()  # "The drawing pad is at ..." once it answers
        url = f"http://127.0.0.1:{port}/"
        client = Client(url, verbose=False)
        trips = []
        for _ in range(requests):
            start = time.perf_counter()
            client.predict(drawing, api_name="/classify_drawing")
            trips.append(time.perf_counter() - start)
        result = {"demo_round_trip_seconds": trips, "demo_server_seconds": server}
        result.update(_browser_latency(url, requests))
    finally:
        process.terminate()
        process.wait()
    return result


def _web_latency(tmp: Path, loads: int, strokes: int) -> dict:
    """The static web page, exported from the bundled run with onnxruntime-web copied in, served on
    127.0.0.1: its load time in fresh browser contexts and its answer to strokes, measured in the page."""
    import functools
    import http.server
    import threading

    ort_dir = Path(__file__).resolve().parent.parent / "node_modules" / "onnxruntime-web" / "dist"
    chromium = browser.chromium()
    if chromium is None or not ort_dir.is_dir():
        return {"web_skipped": "needs playwright, Debian's chromium and onnxruntime-web (npm install)"}
    from playwright.sync_api import sync_playwright

    site = tmp / "site"
    subprocess.run([sys.executable, "-m", "mnist_jax", "export", "--format", "web", "--out", str(site),
                    "--ort-dir", str(ort_dir)], check=True, capture_output=True)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    result = {"web_load_seconds": [], "web_browser_seconds": [], "web_model_seconds": []}
    try:
        with sync_playwright() as playwright:
            chrome = playwright.chromium.launch(executable_path=chromium, args=browser.FLAGS)
            for _ in range(loads):  # a fresh context each time: nothing cached
                context = chrome.new_context()
                page = context.new_page()
                page.goto(url)
                page.wait_for_function("document.body.dataset.state === 'ready'", timeout=30_000)
                result["web_load_seconds"].append(float(page.evaluate("document.body.dataset.readyMs")) / 1000)
                context.close()
            page = chrome.new_page(viewport={"width": 1100, "height": 900})
            page.goto(url)
            page.wait_for_function("document.body.dataset.state === 'ready'", timeout=30_000)
            for seconds in _stroke_seconds(page, "#pad", '[data-testid="top-class"]', "", strokes, clear="#clear"):
                result["web_browser_seconds"].append(seconds)
                result["web_model_seconds"].append(float(page.get_by_test_id("top-class").get_attribute("data-latency-ms")) / 1000)
            chrome.close()
    finally:
        server.shutdown()
        server.server_close()
    return result


def _browser_latency(url: str, strokes: int) -> dict:
    """Strokes drawn on the pad in headless Chromium (Debian's, with Playwright): the time from the
    pen lifted to the answer on the page, measured in the page itself."""
    chromium = browser.chromium()
    if chromium is None:
        return {"browser_skipped": "needs playwright and Debian's chromium"}
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chrome = playwright.chromium.launch(executable_path=chromium, args=browser.FLAGS)
        loads = []
        for _ in range(5):  # a fresh context each time: nothing cached; until the pad is on the page
            context = chrome.new_context()
            page = context.new_page()
            page.goto(url)
            page.locator("#pad canvas").wait_for()
            loads.append(page.evaluate("() => performance.now() / 1000"))
            context.close()
        page = chrome.new_page(viewport={"width": 1100, "height": 900})
        page.goto(url)
        page.locator("#pad canvas").wait_for()
        seconds = list(_stroke_seconds(page, "#pad canvas", "#status", "The model reads", strokes,
                                       clear="#pad .clear", cleared="Draw one digit"))
        chrome.close()
    return {"demo_browser_seconds": seconds, "demo_load_seconds": loads}


def _stroke_seconds(page, pad: str, answer: str, says: str, strokes: int, clear: str, cleared: str | None = None):
    """Draw `strokes` strokes down the middle of the pad (`pad`, a CSS selector) and yield, for each,
    the seconds from the pen lifted to the first change of the `answer` element that contains `says`,
    measured in the page itself. Then the `clear` button is clicked, and the answer waited for to
    say `cleared`, where the page clears it through its server."""
    page.evaluate("""([pad, answer, says]) => {
      window.lifted = 0; window.answered = 0;
      const shown = document.querySelector(answer);
      document.querySelector(pad).addEventListener('pointerup', () => { window.lifted = performance.now(); }, true);
      new MutationObserver(() => {
        if (window.answered < window.lifted && shown.textContent.includes(says)) window.answered = performance.now();
      }).observe(shown, { subtree: true, childList: true, characterData: true });
    }""", [pad, answer, says])
    box = page.locator(pad).bounding_box()
    for _ in range(strokes):
        page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.15 * box["height"])
        page.mouse.down()
        page.mouse.move(box["x"] + 0.5 * box["width"], box["y"] + 0.85 * box["height"], steps=8)
        page.mouse.up()
        page.wait_for_function("() => window.answered > window.lifted", timeout=10_000)
        yield page.evaluate("() => (window.answered - window.lifted) / 1000")
        page.locator(clear).click()
        if cleared is not None:
            page.locator(answer).filter(has_text=cleared).wait_for()


if __name__ == "__main__":
    raise SystemExit(main())
