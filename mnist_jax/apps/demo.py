"""A drawing pad in the browser: draw a digit (or upload a picture) and watch the model read it.

    pip install -e ".[demo]"
    mnist-jax demo                          # http://127.0.0.1:7860, the bundled weights
    mnist-jax demo --run runs/20261129-223500 --port 8000

The page shows the pad, an upload box, the 28x28 image the model sees (after mnist_jax.apps.images made
the picture MNIST-like), where the evidence for its answer lies (integrated gradients, as
`mnist-jax explain` draws them: red for the class, blue against) and the ten class probabilities as
bars, updated after every stroke, with a line that says what it reads, or "Not a digit" or "Unsure"
where the run doubts it as `mnist-jax predict` does (`inference.Doubts`). Built with Gradio, an
optional extra (`demo`), so the core install stays small. Two API endpoints serve the same to
programs (`gradio_client`): /classify_drawing (a PNG data URL) and /classify_picture.
"""

from __future__ import annotations

import base64
import binascii
import ctypes
import errno
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from importlib import resources

from PIL import Image, ImageDraw

from mnist_jax.apps import explain, images, inference
from mnist_jax.apps.drawing import BRUSH_SIZE, PAD_SIZE
from mnist_jax.errors import UserError
from mnist_jax.model import Model, Params

TITLE = "mnist-jax: draw a digit"
DRAW_HINT = "Draw one digit, large, on the white pad: the bars update after every stroke."
SEEN_SCALE = 8  # the 28x28 input is shown 224 pixels wide, each of its pixels a visible square
# The 28x28 input, shown inline (a PNG data URL: no file written, no second request) and scaled up
# with its pixels kept square.
def _picture_html(title: str, alt: str) -> str:
    return f"""<div class="seen"><p>{title}</p>${{value
  ? `<img src="${{value}}" width="{28 * SEEN_SCALE}" height="{28 * SEEN_SCALE}" alt="{alt}">`
  : `<div class="none" style="width: {28 * SEEN_SCALE}px; height: {28 * SEEN_SCALE}px"></div>`}}</div>"""


SEEN_HTML = _picture_html("What the model sees (28x28)", "the 28x28 input")
EVIDENCE_HTML = _picture_html("Where its answer comes from (red: for, blue: against)", "the evidence for the answer")
# Path points of the demo's integrated gradients: 16 keep the answer's attributions within 1% of its
# logit gain (0.8% at most on 32 test digits) at a quarter of `mnist-jax explain`'s 64 steps' work.
EVIDENCE_STEPS = 16
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
# The pen is the web page's (mnist_jax/page/pad.js): one definition of how a stroke is drawn.
PAD_JS = (resources.files("mnist_jax") / "page" / "pad.js").read_text() + """
const canvas = element.querySelector('canvas');
const send = (url) => { props.value = url; trigger('input'); };
const pen = attachPad(canvas, () => BRUSH, () => send(canvas.toDataURL('image/png')));
element.querySelector('.clear').addEventListener('click', () => {
  pen.clearRect(0, 0, canvas.width, canvas.height);
  send('');
});
""".replace("BRUSH", str(BRUSH_SIZE))


# Limits on what the server takes in, before anything is decoded. A drawing from the pad is a
# 280 x 280 PNG, 10-60 KB as a data URL; a picture is uploaded as a file, up to images.MAX_FILE_BYTES.
MAX_REQUEST_BYTES = 2_000_000
MAX_UPLOAD_BYTES = images.MAX_FILE_BYTES + 100_000  # the file and its multipart envelope
# Requests waiting for the model at once; more are refused ("queue is full") rather than held.
MAX_QUEUED = 16
DIGITS = tuple(str(digit) for digit in range(10))  # MNIST's class names


def check_port(host: str, port: int) -> None:
    """A UserError saying why the pad cannot be served on `host`:`port`, found by binding it now."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            # As the server binds: a port left in TIME_WAIT by a demo just stopped is free to take.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except socket.gaierror:
        raise UserError(f"--host {host}: not an address of this machine") from None
    except OSError as e:
        reason = "already in use; pick another with --port" if e.errno == errno.EADDRINUSE else e.strerror
        raise UserError(f"cannot serve on {host} port {port}: {reason}") from None


def require_gradio() -> None:
    """A UserError saying how to install Gradio, if it is missing: the core install leaves it out."""
    try:
        import gradio  # noqa: F401  (only to say at once that it is missing)
    except ImportError:
        raise UserError("the demo needs Gradio, which the core install leaves out: "
                        "pip install 'mnist-jax[demo]' (from a clone: pip install -e '.[demo]')") from None


def announce(host: str, port: int) -> Callable[[str], None]:
    """`serve`'s on_start for the command: where the pad is, and a warning when other machines can reach it."""
    import ipaddress
    import sys

    def started(url: str) -> None:
        print(f"The drawing pad is at {url} (Ctrl-C stops it)", flush=True)
        if not ipaddress.ip_address(socket.getaddrinfo(host, port)[0][4][0]).is_loopback:
            print(f"warning: serving on {host}, so other machines that can reach this one can use the pad too",
                  file=sys.stderr, flush=True)

    return started


def read_digit(params: Params, model: Model, picture: Image.Image | None, class_names: Sequence[str] = DIGITS,
               doubts: inference.Doubts = inference.Doubts()) -> tuple[str, str, dict, str]:
    """What the page shows for a picture read by `images.read_picture`: the 28x28 input the model
    sees and where the evidence for its answer lies (PNG data URLs; "" for none), the ten
    probabilities by class name (`class_names`, the run's dataset's: MNIST's digits by default),
    and a line of text, which says "not a digit" or "unsure" where the run's `doubts` do
    (`rundir.load_doubts`, as `mnist-jax predict` says them; by default, neither)."""
    if picture is None:
        return "", "", {}, DRAW_HINT
    try:
        digit = images.to_mnist(picture)
    except images.NoDigitError as e:
        return "", "", {}, f"No digit found ({e})."
    explained = explain.explain(params, digit[None], model, top=1, steps=EVIDENCE_STEPS)
    probs = explained.all_probabilities[0]
    best = int(explained.classes[0, 0])
    bars = {name: float(p) for name, p in zip(class_names, probs, strict=True)}
    evidence = Image.fromarray(explain.evidence_image(digit, explained.attributions[0, 0]))
    verdict = doubts.verdicts(params, digit[None], probs[None])[0]
    guess = f"{class_names[best]} ({probs[best]:.1%})"
    if verdict == doubts.not_word:
        text = f"{verdict.capitalize()}: it looks like none of the {doubts.thing}s the model learned (its guess: a {guess})."
    elif verdict == "unsure":
        text = f"Unsure: perhaps a {guess}, but the model cannot stand behind it."
    else:
        text = f"The model reads a {guess}."
    return png_data_url(images.png_bytes(digit)), png_data_url(images.png_bytes(evidence)), bars, text


def png_data_url(png: bytes) -> str:
    """PNG bytes as a data URL, the form the page and the API exchange images in."""
    return "data:image/png;base64," + base64.b64encode(png).decode()


def decode_drawing(data_url: object) -> Image.Image | None:
    """The picture of a drawing sent as an image data URL ("data:image/png;base64,..."); None when
    empty. An images.ImageError, one line, for anything else."""
    if data_url is None or data_url == "":
        return None
    if not isinstance(data_url, str):
        raise images.ImageError(f"the drawing: expected an image data URL, got {type(data_url).__name__}")
    header, _, payload = data_url.partition(",")
    if not (header.startswith("data:image/") and header.endswith(";base64")):
        raise images.ImageError("the drawing: not an image data URL (data:image/png;base64,...)")
    try:
        content = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise images.ImageError("the drawing: the data URL's base64 is damaged") from None
    return images.read_picture(content, "the drawing")


def release_memory() -> None:
    """Hand the memory that a large request's buffers freed back to the system: glibc keeps freed
    heap for reuse, and without this the server's size only ever grew with the largest burst."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to do
        pass


class LimitRequests:
    """ASGI middleware: a request whose body is larger than its route's limit gets 413, its body
    dropped as it arrives (by its Content-Length) or once the limit is passed (a chunked body):
    nothing of it is kept, parsed or queued."""

    def __init__(self, app, limit: int = MAX_REQUEST_BYTES, upload_limit: int = MAX_UPLOAD_BYTES):
        self.app, self.limit, self.upload_limit = app, limit, upload_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.upload_limit if scope["path"].rstrip("/").endswith("/upload") else self.limit
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            await _drain(receive)  # read and dropped, so that the client hears the answer
            return await _refuse(send, limit)
        received, started, refused = 0, False, False

        async def counted_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        async def tracked_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            if not refused:
                await send(message)

        await self.app(scope, counted_receive, tracked_send)
        if refused and not started:
            await _refuse(send, limit)


async def _drain(receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _refuse(send, limit: int) -> None:
    body = f"request too large: at most {limit // 1_000_000} MB".encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def build_app(params: Params, model: Model, source: str, class_names: Sequence[str] = DIGITS,
              doubts: inference.Doubts = inference.Doubts()):
    """The Gradio app and its theme; `source` says where the weights come from, shown on the page;
    the bars are labelled with `class_names`; the text says what the run's `doubts` doubt (`read_digit`).

    API (gradio_client): /classify_drawing takes a drawing as a PNG data URL, /classify_picture a
    picture; both return the 28x28 input as seen, where the evidence for the answer lies, the ten
    probabilities and a line of text."""
    import gradio as gr

    def answer(read) -> tuple[str, str, dict, str]:
        try:
            return read_digit(params, model, read(), class_names, doubts)
        except images.ImageError as e:  # its message names the drawing or the upload
            return "", "", {}, f"Could not read {e}."
        finally:
            release_memory()

    def from_drawing(data_url):
        return answer(lambda: decode_drawing(data_url))

    def from_upload(picture: str | None):
        if picture is None:
            return read_digit(params, model, None, class_names)
        if picture.startswith("data:"):
            return answer(lambda: decode_drawing(picture))
        return answer(lambda: images.read_picture(picture, "the upload"))

    # System fonts: Gradio's default theme fetches Google Fonts, which an offline machine cannot reach.
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"## {TITLE}\nThe notebook's CNN in JAX, weights: {source}.")
        with gr.Row():
            pad = gr.HTML("", html_template=PAD_HTML, css_template=PAD_CSS, js_on_load=PAD_JS,
                          apply_default_css=False, elem_id="pad")
            upload = gr.Image(label="Or upload a picture", type="filepath", image_mode=None,
                              sources=["upload", "clipboard"], elem_id="upload")
            # The uploaded file itself (or a client's data URL), decoded by images.read_picture within
            # its limits rather than by Gradio first. (A subclass would make Gradio write a .pyi here.)
            upload.preprocess = lambda payload: None if payload is None else payload.path or payload.url
        with gr.Row():
            seen = gr.HTML("", html_template=SEEN_HTML, css_template=SEEN_CSS, apply_default_css=False,
                           js_on_load=None, elem_id="seen")
            evidence = gr.HTML("", html_template=EVIDENCE_HTML, css_template=SEEN_CSS, apply_default_css=False,
                               js_on_load=None, elem_id="evidence")
            bars = gr.Label(label="Class probabilities", num_top_classes=10, elem_id="bars")
        status = gr.Markdown(DRAW_HINT, elem_id="status")
        outputs = [seen, evidence, bars, status]
        # Only the newest stroke matters: earlier requests still waiting are dropped.
        pad.input(from_drawing, pad, outputs, api_name="classify_drawing", trigger_mode="always_last",
                      show_progress="hidden")
        upload.change(from_upload, upload, outputs, api_name="classify_picture", show_progress="hidden")
    app.queue(max_size=MAX_QUEUED, default_concurrency_limit=1)  # one model call at a time, a bounded wait
    return app, theme


def _first_request(url: str) -> None:
    """Answer one drawing before anyone draws: the first request compiles the model's program for
    one image and starts Gradio's queue (about 0.7 s here), which the first stroke would wait for."""
    from gradio_client import Client

    stroke = Image.new("RGBA", (PAD_SIZE, PAD_SIZE))
    ImageDraw.Draw(stroke).line([(140, 40), (140, 240)], fill="black", width=BRUSH_SIZE)
    Client(url, verbose=False).predict(png_data_url(images.png_bytes(stroke)), api_name="/classify_drawing")


def serve(params: Params, model: Model, source: str, host: str, port: int, on_start=print,
          class_names: Sequence[str] = DIGITS, doubts: inference.Doubts = inference.Doubts()) -> None:
    """Serve the app on host:port until Ctrl-C or SIGTERM; `on_start(url)` once it answers; the bars
    are labelled with `class_names`, the text says what `doubts` doubt (`read_digit`).

    The signals only ask for the stop, which the main thread makes between its checks: the server
    is closed the same way whichever ends it. (Ctrl-C is left alone where the process was started
    with it ignored, as a shell does for a background job.)
    """
    stop = threading.Event()
    signals = [signal.SIGTERM] + ([signal.SIGINT] if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN else [])
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in signals}
    app, theme = build_app(params, model, source, class_names, doubts)
    try:
        from starlette.middleware import Middleware

        app.launch(server_name=host, server_port=port, quiet=True, prevent_thread_lock=True, theme=theme,
                   footer_links=["api"], show_error=False, max_file_size=images.MAX_FILE_BYTES,
                   app_kwargs={"middleware": [Middleware(LimitRequests)]})
        # Every interface (0.0.0.0, ::) includes this machine's own: the URL to open here.
        local = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        url = f"http://{local if ':' not in local else f'[{local}]'}:{port}"
        _first_request(url)
        on_start(url)
        while app.is_running and not stop.wait(0.1):
            pass
    finally:
        app.close(verbose=False)
        for s, handler in previous.items():
            signal.signal(s, handler)
