"""A drawing pad in the browser: draw a digit (or upload a picture) and watch the model read it.

    pip install -e ".[demo]"
    mnist-jax demo                          # http://127.0.0.1:7860, the bundled weights
    mnist-jax demo --run runs/20261129-223500 --port 8000

The page shows the pad, an upload box, the 28x28 image the model sees (after mnist_jax.images made
the picture MNIST-like) and the ten class probabilities as bars, updated after every stroke. Built
with Gradio, an optional extra (`demo`), so the core install stays small. Two API endpoints serve
the same to programs (`gradio_client`): /classify_drawing (a PNG data URL) and /classify_picture.
"""

from __future__ import annotations

import base64
import binascii
import io
import signal
import threading

import numpy as np
from PIL import Image, ImageDraw

from mnist_jax import images, inference
from mnist_jax.model import Model, Params

TITLE = "mnist-jax: draw a digit"
DRAW_HINT = "Draw one digit, large, on the white pad: the bars update after every stroke."
PAD_SIZE = 280  # pixels of the pad's canvas
BRUSH_SIZE = 24  # a digit drawn 200 pixels tall gets strokes 2.4 pixels wide in 20, as in MNIST
SEEN_SCALE = 8  # the 28x28 input is shown 224 pixels wide, each of its pixels a visible square
# The 28x28 input, shown inline (a PNG data URL: no file written, no second request) and scaled up
# with its pixels kept square.
SEEN_HTML = f"""<div class="seen"><p>What the model sees (28x28)</p>${{value
  ? `<img src="${{value}}" width="{28 * SEEN_SCALE}" height="{28 * SEEN_SCALE}" alt="the 28x28 input">`
  : `<div class="none" style="width: {28 * SEEN_SCALE}px; height: {28 * SEEN_SCALE}px"></div>`}}</div>"""
SEEN_CSS = """
.seen p { margin: 0 0 6px 0; font-size: 14px; }
.seen img { image-rendering: pixelated; border-radius: 4px; }
.seen .none { background: black; border-radius: 4px; }
"""

# The pad: a plain canvas. Gradio's own Sketchpad took 0.6 to 0.9 s after each stroke (in headless
# Chromium here) before it sent anything, and starts with no tool chosen. When a stroke ends, the
# drawing goes to the server as a PNG data URL through a hidden text box (#drawing), whose `input`
# event runs the model; "Clear" sends an empty one.
PAD_HTML = f"""<div class="pad">
  <canvas width="{PAD_SIZE}" height="{PAD_SIZE}" aria-label="drawing pad"></canvas>
  <button type="button" class="clear">Clear</button>
</div>"""
PAD_CSS = """
.pad { display: flex; flex-direction: column; align-items: flex-start; gap: 8px; }
.pad canvas { background: white; border: 1px solid #999; border-radius: 4px; touch-action: none;
              width: 280px; height: 280px; cursor: crosshair; }
.pad .clear { padding: 4px 16px; border: 1px solid #999; border-radius: 4px; background: #f4f4f4; }
"""
PAD_JS = """
const canvas = element.querySelector('canvas');
const pen = canvas.getContext('2d');
pen.lineCap = 'round'; pen.lineJoin = 'round'; pen.lineWidth = BRUSH; pen.strokeStyle = 'black';
let last = null;
const at = (e) => {
  const box = canvas.getBoundingClientRect();
  return [(e.clientX - box.left) * canvas.width / box.width, (e.clientY - box.top) * canvas.height / box.height];
};
const send = (url) => { props.value = url; trigger('input'); };
canvas.addEventListener('pointerdown', (e) => {
  canvas.setPointerCapture(e.pointerId);
  last = at(e);
  pen.beginPath(); pen.moveTo(...last); pen.lineTo(...last); pen.stroke();
});
canvas.addEventListener('pointermove', (e) => {
  if (!last) return;
  const point = at(e);
  pen.beginPath(); pen.moveTo(...last); pen.lineTo(...point); pen.stroke();
  last = point;
});
const end = () => { if (last) { last = null; send(canvas.toDataURL('image/png')); } };
canvas.addEventListener('pointerup', end);
canvas.addEventListener('pointercancel', end);
element.querySelector('.clear').addEventListener('click', () => {
  pen.clearRect(0, 0, canvas.width, canvas.height);
  send('');
});
""".replace("BRUSH", str(BRUSH_SIZE))


def read_digit(params: Params, model: Model, picture: np.ndarray | None) -> tuple[str, dict, str]:
    """What the page shows for a picture (gray, RGB or RGBA pixels): the 28x28 input the model sees
    (a PNG data URL; "" for none), the ten probabilities by class name, and a line of text."""
    if picture is None:
        return "", {}, DRAW_HINT
    try:
        digit = images.to_mnist(images.from_array(picture))
    except images.NoDigitError as e:
        return "", {}, f"No digit found ({e})."
    probs = inference.classify(params, digit[None], model)[0]
    best = int(np.argmax(probs))
    return png_data_url(images.png_bytes(digit)), {str(c): float(p) for c, p in enumerate(probs)}, f"The model reads a {best} ({probs[best]:.1%})."


def png_data_url(png: bytes) -> str:
    """PNG bytes as a data URL, the form the page and the API exchange images in."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def decode_drawing(data_url: str | None) -> np.ndarray | None:
    """The pixels of a drawing sent as a PNG data URL ("data:image/png;base64,..."); None when empty.
    Raises ValueError for anything else."""
    if not data_url:
        return None
    header, _, payload = data_url.partition(",")
    if not (header.startswith("data:image/") and header.endswith(";base64")):
        raise ValueError("not an image data URL")
    try:
        with Image.open(io.BytesIO(base64.b64decode(payload, validate=True))) as image:
            if image.width * image.height > images.MAX_PIXELS:
                raise ValueError("too large")
            return np.asarray(image.convert("RGBA"))
    except (binascii.Error, OSError) as e:
        raise ValueError(f"not a readable image ({e})") from None


def build_app(params: Params, model: Model, source: str):
    """The Gradio app and its theme; `source` says where the weights come from, shown on the page.

    API (gradio_client): /classify_drawing takes a drawing as a PNG data URL, /classify_picture a
    picture; both return the 28x28 input as seen, the ten probabilities and a line of text."""
    import gradio as gr

    def from_drawing(data_url: str | None):
        try:
            return read_digit(params, model, decode_drawing(data_url))
        except ValueError as e:
            return "", {}, f"That drawing could not be read: {e}."

    def from_upload(picture: np.ndarray | None):
        return read_digit(params, model, picture)

    # System fonts: Gradio's default theme fetches Google Fonts, which an offline machine cannot reach.
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"## {TITLE}\nThe notebook's CNN in JAX, weights: {source}.")
        with gr.Row():
            pad = gr.HTML("", html_template=PAD_HTML, css_template=PAD_CSS, js_on_load=PAD_JS,
                          apply_default_css=False, elem_id="pad")
            upload = gr.Image(label="Or upload a picture", type="numpy", image_mode="RGBA",
                              sources=["upload", "clipboard"], elem_id="upload")
        with gr.Row():
            seen = gr.HTML("", html_template=SEEN_HTML, css_template=SEEN_CSS, apply_default_css=False,
                           js_on_load=None, elem_id="seen")
            bars = gr.Label(label="Class probabilities", num_top_classes=10, elem_id="bars")
        status = gr.Markdown(DRAW_HINT, elem_id="status")
        outputs = [seen, bars, status]
        # Only the newest stroke matters: earlier requests still waiting are dropped.
        pad.input(from_drawing, pad, outputs, api_name="classify_drawing", trigger_mode="always_last",
                      show_progress="hidden")
        upload.change(from_upload, upload, outputs, api_name="classify_picture", show_progress="hidden")
    return app, theme


def _first_request(url: str) -> None:
    """Answer one drawing before anyone draws: the first request compiles the model's program for
    one image and starts Gradio's queue (about 0.7 s here), which the first stroke would wait for."""
    from gradio_client import Client

    stroke = Image.new("RGBA", (PAD_SIZE, PAD_SIZE))
    ImageDraw.Draw(stroke).line([(140, 40), (140, 240)], fill="black", width=BRUSH_SIZE)
    Client(url, verbose=False).predict(png_data_url(images.png_bytes(stroke)), api_name="/classify_drawing")


def serve(params: Params, model: Model, source: str, host: str, port: int, on_start=print) -> None:
    """Serve the app on host:port until Ctrl-C or SIGTERM; `on_start(url)` once it answers.

    The signals only ask for the stop, which the main thread makes between its checks: the server
    is closed the same way whichever ends it. (Ctrl-C is left alone where the process was started
    with it ignored, as a shell does for a background job.)
    """
    stop = threading.Event()
    signals = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else [])
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in signals}
    app, theme = build_app(params, model, source)
    try:
        app.launch(server_name=host, server_port=port, quiet=True, prevent_thread_lock=True, theme=theme,
                   footer_links=["api"], show_error=False)
        url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        _first_request(url.replace("0.0.0.0", "127.0.0.1").replace("[::]", "[::1]"))
        on_start(url)
        while app.is_running and not stop.wait(0.1):
            pass
    finally:
        app.close(verbose=False)
        for s, handler in previous.items():
            signal.signal(s, handler)
