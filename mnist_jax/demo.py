"""A drawing pad in the browser: draw a digit (or upload a picture) and watch the model read it.

    pip install -e ".[demo]"
    mnist-jax demo                          # http://127.0.0.1:7860, the bundled weights
    mnist-jax demo --run runs/20261129-223500 --port 8000

The page shows the pad, an upload box, the 28x28 image the model sees (after mnist_jax.images made
the picture MNIST-like) and the ten class probabilities as bars, updated after every stroke. Built
with Gradio, an optional extra (`demo`), so the core install stays small. Two API endpoints serve
the same to programs (`gradio_client`): /classify_drawing (the pad's layers) and /classify_picture.
"""

from __future__ import annotations

import time

import numpy as np

from mnist_jax import images, inference
from mnist_jax.model import Classifier, Params

TITLE = "mnist-jax: draw a digit"
DRAW_HINT = "Draw one digit, large, on the white pad: the bars update after every stroke."
# The pad's brush: about as thick, relative to the pad, as an MNIST stroke is to its 28x28 frame.
PAD_SIZE = 280
# Run in the page once it loads; the pad's toolbar appears a little later, so look for it a while.
SELECT_BRUSH = """() => {
  let tries = 0;
  const pick = setInterval(() => {
    const brush = document.querySelector('#pad button[aria-label="Brush"]');
    if (brush) brush.click();
    if (brush || ++tries > 100) clearInterval(pick);
  }, 100);
}"""
BRUSH_SIZE = 12
SEEN_SCALE = 8  # the 28x28 input is shown 224 pixels wide, each of its pixels a visible square


def read_digit(params: Params, model: Classifier, picture: np.ndarray | None) -> tuple[np.ndarray | None, dict, str]:
    """What the page shows for a picture (gray, RGB or RGBA pixels): the 28x28 input the model sees
    (each pixel a SEEN_SCALE-wide square), the ten probabilities by class name, and a line of text."""
    if picture is None:
        return None, {}, DRAW_HINT
    try:
        digit = images.to_mnist(images.from_array(picture))
    except images.NoDigitError as e:
        return None, {}, f"No digit found ({e})."
    probs = inference.classify(params, digit[None], model)[0]
    best = int(np.argmax(probs))
    seen = np.kron(digit[..., 0], np.ones((SEEN_SCALE, SEEN_SCALE), np.uint8))
    return seen, {str(c): float(p) for c, p in enumerate(probs)}, f"The model reads a {best} ({probs[best]:.1%})."


def build_app(params: Params, model: Classifier, source: str):
    """The Gradio app; `source` says where the weights come from, shown on the page."""
    import gradio as gr

    def from_pad(value: dict | None):
        return read_digit(params, model, None if value is None else value.get("composite"))

    def from_upload(picture: np.ndarray | None):
        return read_digit(params, model, picture)

    # System fonts: Gradio's default theme fetches Google Fonts, which an offline machine cannot reach.
    theme = gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
    with gr.Blocks(title=TITLE, analytics_enabled=False) as app:
        gr.Markdown(f"## {TITLE}\nThe notebook's CNN in JAX, weights: {source}.")
        with gr.Row():
            pad = gr.Sketchpad(label="Draw here", type="numpy", image_mode="RGBA", canvas_size=(PAD_SIZE, PAD_SIZE),
                               brush=gr.Brush(default_size=BRUSH_SIZE, colors=["#000000"], color_mode="fixed"),
                               layers=False, elem_id="pad")
            upload = gr.Image(label="Or upload a picture", type="numpy", image_mode="RGBA",
                              sources=["upload", "clipboard"], elem_id="upload")
        with gr.Row():
            seen = gr.Image(label="What the model sees (28x28)", type="numpy", image_mode="L", interactive=False,
                            format="png", height=28 * SEEN_SCALE + 40, elem_id="seen")
            bars = gr.Label(label="Class probabilities", num_top_classes=10, elem_id="bars")
        status = gr.Markdown(DRAW_HINT, elem_id="status")
        outputs = [seen, bars, status]
        # Only the newest stroke matters: earlier requests still waiting are dropped.
        pad.change(from_pad, pad, outputs, api_name="classify_drawing", trigger_mode="always_last",
                   show_progress="hidden")
        upload.change(from_upload, upload, outputs, api_name="classify_picture", show_progress="hidden")
        # Gradio's pad starts with no tool chosen ("select the draw tool to start"): choose the brush.
        app.load(None, js=SELECT_BRUSH)
    return app, theme


def serve(params: Params, model: Classifier, source: str, host: str, port: int, on_start=print) -> None:
    """Serve the app on host:port until Ctrl-C; `on_start(url)` once it answers."""
    app, theme = build_app(params, model, source)
    app.launch(server_name=host, server_port=port, quiet=True, prevent_thread_lock=True, theme=theme,
               footer_links=["api"], show_error=False)
    try:
        on_start(f"http://{host if ':' not in host else f'[{host}]'}:{port}")
        while app.is_running:
            time.sleep(0.1)
    finally:
        app.close(verbose=False)
