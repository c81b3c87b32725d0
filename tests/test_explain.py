"""Explanations (mnist_jax.apps.explain, `mnist-jax explain`): integrated gradients that add up to the
logit gain, and that find the pixels the model's reading rests on."""

import re
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from mnist_jax import cli
from mnist_jax.apps import explain
from mnist_jax.fast import model_for
from mnist_jax.run import rundir

FIXTURES = __import__("pathlib").Path(__file__).parent / "fixtures" / "digits"


@pytest.fixture(scope="module")
def explained(mnist):
    config, _, params = rundir.load_run(rundir.BUNDLED_RUN)
    images, labels = mnist["test"][0][:8], mnist["test"][1][:8]
    return explain.explain(params, images, model_for(config), steps=32), images, labels, (params, model_for(config))


def test_the_attributions_add_up_to_the_logit_gain(explained):
    """Completeness: each class's attributions sum to its logit on the picture less its logit on
    the blank digit, within 1% for the top class (at 32 midpoints, half the command's default; 0.4%
    at most measured on 32 test digits) and 0.05 logits for any class (a runner-up's gain can be a
    fraction of a logit)."""
    e, _, labels, _ = explained
    assert np.all(e.classes[:, 0] == labels) and np.all(e.probabilities[:, 0] >= e.probabilities[:, 1])
    sums = e.attributions.sum((2, 3))
    np.testing.assert_allclose(sums[:, 0], e.logit_gain[:, 0], rtol=0.01)
    assert np.abs(sums - e.logit_gain).max() < 0.05


def test_the_path_points_go_in_bounded_batches_with_the_same_attributions(explained, monkeypatch):
    """However many pictures, classes and steps, no program holds more than POINTS_PER_BATCH path
    points (all in one batch, 33 pictures peaked at 9.1 GB), and the attributions do not change."""
    e, images, _, (params, model) = explained
    sizes, path_gradient_sums = [], explain._path_gradient_sums

    def counted(params, pictures, classes, alphas, weights, *, model):
        sizes.append(len(pictures) * len(alphas))
        return path_gradient_sums(params, pictures, classes, alphas, weights, model=model)

    monkeypatch.setattr(explain, "POINTS_PER_BATCH", 16)
    monkeypatch.setattr(explain, "_path_gradient_sums", counted)
    small = explain.explain(params, images[:3], model, steps=32)  # a picture's 32 steps in two batches
    assert max(sizes) == 16 and len(sizes) == 3 * 2 * 2
    np.testing.assert_allclose(small.attributions, e.attributions[:3], rtol=1e-4, atol=1e-6)


def test_erasing_the_most_attributed_stroke_pixels_costs_the_class_most(explained):
    """Set to blank the tenth of each digit's stroke pixels with the largest attribution for its
    class, or a random tenth: the first lowers the class's logit several times more (measured: 5.1
    against 1.1 logits on average), on nearly every digit. An explanation that pointed anywhere
    else on the stroke would not."""
    e, images, _, (params, model) = explained
    rng = np.random.default_rng(0)
    top, chosen_at_random = [], []
    for image, c, a in zip(images, e.classes[:, 0], e.attributions[:, 0]):
        stroke = np.flatnonzero(image[..., 0] > 0)
        k = len(stroke) // 10
        for pixels, drops in ((stroke[np.argsort(-a.flat[stroke])][:k], top),
                              (rng.choice(stroke, k, replace=False), chosen_at_random)):
            erased = image.copy().reshape(-1)
            erased[pixels] = 0
            logits = np.asarray(model.apply(params, np.stack([image, erased.reshape(image.shape)])))
            drops.append(logits[0, c] - logits[1, c])
    top, chosen_at_random = np.array(top), np.array(chosen_at_random)
    assert top.mean() > 3 * chosen_at_random.mean() and np.mean(top > chosen_at_random) >= 7 / 8


def test_the_command_writes_a_figure_per_picture_and_one_line_each(tmp_path, capsys):
    pictures = [FIXTURES / "0-pen-clean.png", FIXTURES / "7-pen-clean.png"]
    code = cli.execute(["explain", *map(str, pictures), str(tmp_path / "missing.png"), "--out-dir", str(tmp_path / "out")])
    out, err = capsys.readouterr()
    assert code == 2 and err == f"mnist-jax explain: error: {tmp_path / 'missing.png'}: file not found\n"
    lines = out.splitlines()
    assert len(lines) == 2
    for digit, picture, line in zip("07", pictures, lines):
        figure = tmp_path / "out" / f"{picture.stem}-explained.svg"
        assert re.fullmatch(rf"{re.escape(str(picture))}: {digit} \(0\.\d{{4}}\)  \d \(0\.\d{{4}}\)  -> "
                            rf"{re.escape(str(figure))}", line), line
        svg = figure.read_text()
        assert ET.fromstring(svg).tag == "{http://www.w3.org/2000/svg}svg" and f"evidence for {digit} (" in svg


def test_format_png_writes_png_figures(tmp_path, capsys):
    picture = FIXTURES / "7-pen-clean.png"
    code = cli.execute(["explain", str(picture), "--steps", "8", "--format", "png", "--out-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    figure = tmp_path / "7-pen-clean-explained.png"
    assert code == 0 and out.endswith(f"  -> {figure}\n"), err
    assert figure.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and [p.name for p in tmp_path.iterdir()] == [figure.name]
