import itertools
import xml.etree.ElementTree as ET

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg

from mnist_jax.apps.plotting import (plot_classification, plot_confident_mistakes, plot_confusion_matrix, plot_history,
                                     plot_sweep, save_error_figures, save_figure)
from mnist_jax.config import TrainConfig
from mnist_jax.data import DATASETS

HISTORY = {"train_loss": [1.8, 0.7, 0.4], "test_loss": [1.1, 0.5, 0.3],
           "train_accuracy": [0.62, 0.83, 0.89], "test_accuracy": [0.79, 0.88, 0.99]}


def test_history_figure_has_the_notebooks_panels():
    fig = plot_history(HISTORY)
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["Train Loss", "Test Loss"]
    labels = [line.get_label() for line in acc_ax.get_lines()]
    assert labels == ["Train Accuracy", "Test Accuracy", "Accuracy 0.98"]
    dotted = acc_ax.get_lines()[2]
    assert dotted.get_linestyle() == ":" and set(dotted.get_ydata()) == {0.98}
    np.testing.assert_allclose(acc_ax.get_lines()[1].get_ydata(), HISTORY["test_accuracy"])
    assert acc_ax.get_xlabel() == "Epoch" and fig._suptitle.get_text() == "Train result"


def test_multi_seed_history_draws_the_mean_and_a_min_max_band():
    seeds = {k: [[v, v + 0.02, v - 0.04] for v in values] for k, values in HISTORY.items()}
    fig = plot_history(seeds)
    loss_ax, acc_ax = fig.axes
    assert [line.get_label() for line in acc_ax.get_lines()] == [
        "Train Accuracy (mean)", "Test Accuracy (mean)", "Accuracy 0.98"]
    np.testing.assert_allclose(acc_ax.get_lines()[1].get_ydata(), np.array(HISTORY["test_accuracy"]) - 0.02 / 3)
    bands = acc_ax.collections
    assert [b.get_label() for b in bands] == ["Train Accuracy (min-max)", "Test Accuracy (min-max)"]
    ys = bands[1].get_paths()[0].vertices[:, 1]
    np.testing.assert_allclose([ys.min(), ys.max()], [0.79 - 0.04, 0.99 + 0.02])
    assert len(loss_ax.collections) == 2 and "3 seeds" in fig._suptitle.get_text()


def test_classification_figure_titles_each_digit():
    images = np.zeros((6, 28, 28, 1), np.uint8)
    fig = plot_classification(images, [1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 0])
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0] == "label: 1 / prediction: 1" and titles[5] == "label: 6 / prediction: 0"
    assert len(fig.axes) == 6


def test_save_figure_writes_valid_byte_stable_svg(tmp_path):
    save_figure(plot_history(HISTORY), tmp_path / "a.svg")
    save_figure(plot_history(HISTORY), tmp_path / "b.svg")
    assert ET.parse(tmp_path / "a.svg").getroot().tag.endswith("svg")
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_confusion_matrix_annotates_counts_and_errors():
    confusion = np.diag([5] * 10)
    confusion[7, 2] = 3
    fig = plot_confusion_matrix(confusion)
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert texts.count("5") == 10 and "3" in texts
    assert fig.axes[0].get_title() == "Confusion matrix: 3 errors in 53 test digits"


def test_confident_mistakes_shows_the_surest_errors_first():
    labels = np.array([0, 1, 2, 3])
    probs = np.full((4, 10), 0.01)
    probs[0, 0] = 0.9   # right
    probs[1, 7] = 0.6   # wrong, less sure
    probs[2, 5] = 0.95  # wrong, surest
    probs[3, 3] = 0.8   # right
    fig = plot_confident_mistakes(np.zeros((4, 28, 28, 1), np.uint8), labels, probs, size=(1, 3))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["true 2 / pred 5\np = 0.950", "true 1 / pred 7\np = 0.600", ""]


FASHION = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")


def test_figures_name_the_classes_when_given_their_names():
    images = np.zeros((2, 28, 28, 1), np.uint8)
    fig = plot_classification(images, [0, 9], [6, 9], size=(1, 2), class_names=FASHION)
    assert [ax.get_title() for ax in fig.axes] == ["label: T-shirt/top\nprediction: Shirt",
                                                   "label: Ankle boot\nprediction: Ankle boot"]
    confusion = np.diag([5] * 10)
    confusion[0, 6] = 2
    ax = plot_confusion_matrix(confusion, FASHION).axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == list(FASHION)
    assert ax.get_title() == "Confusion matrix: 2 errors in 52 test images"
    probs = np.full((1, 10), 0.01)
    probs[0, 6] = 0.9
    fig = plot_confident_mistakes(images[:1], np.array([0]), probs, size=(1, 1), class_names=FASHION)
    assert fig.axes[0].get_title() == "true T-shirt/top / pred Shirt\np = 0.900"


def test_mnist_class_names_draw_the_same_figures_as_none(tmp_path):
    digits = tuple(map(str, range(10)))
    confusion = np.diag([5] * 10)
    confusion[7, 2] = 3
    save_figure(plot_confusion_matrix(confusion), tmp_path / "a.svg")
    save_figure(plot_confusion_matrix(confusion, digits), tmp_path / "b.svg")
    assert (tmp_path / "a.svg").read_bytes() == (tmp_path / "b.svg").read_bytes()
    fig = plot_classification(np.zeros((1, 28, 28, 1), np.uint8), [3], [5], size=(1, 1), class_names=digits)
    assert fig.axes[0].get_title() == "label: 3 / prediction: 5"


def _visible(line) -> bool:
    """A line shows on the figure: it joins two points or more, or marks its one point."""
    return len(line.get_xdata()) > 1 or line.get_marker() not in (None, "", " ", "None", "none")


def test_a_one_epoch_history_shows_every_curve_on_an_axis_around_its_epoch():
    one = {key: values[:1] for key, values in HISTORY.items()}
    seeds = {key: [[values[0], values[0] + 0.02]] for key, values in HISTORY.items()}
    for history in (one, seeds):
        fig = plot_history(history)
        for ax in fig.axes:
            assert ax.get_lines() and all(_visible(line) for line in ax.get_lines()), [l.get_label() for l in ax.get_lines()]
            low, high = ax.get_xlim()
            assert low < 0 < high and high - low >= 1 and list(ax.get_xticks()) == [0]


SWEEP = TrainConfig(epochs=1, sweep="lr=1e-3,3e-3")


def test_a_one_epoch_sweep_says_one_epoch_and_draws_it_on_a_unit_axis():
    history = {"train_loss": [[0.5, 0.4]], "test_loss": [[0.4, 0.3]], "train_accuracy": [[0.8, 0.85]],
               "test_accuracy": [[0.82, 0.87]]}
    fig = plot_sweep(SWEEP, history)
    assert fig._suptitle.get_text() == "Sweep of learning_rate: 2 values x 1 seed, 1 epoch"
    curves = fig.axes[0]
    assert curves.get_xlim() == (-0.5, 0.5) and list(curves.get_xticks()) == [0]
    assert all(_visible(line) for line in curves.get_lines())
    two = {key: values * 2 for key, values in history.items()}
    assert plot_sweep(SWEEP, two)._suptitle.get_text().endswith(", 2 epochs")


def test_fashion_mnists_long_class_names_leave_the_titles_apart():
    names = DATASETS["fashion_mnist"].class_names
    longest = sorted(range(len(names)), key=lambda c: -len(names[c]))[:2]  # T-shirt/top, Ankle boot
    fig = plot_classification(np.zeros((6, 28, 28, 1), np.uint8), [longest[0]] * 6, [longest[1]] * 6,
                              class_names=names)
    renderer = FigureCanvasAgg(fig).get_renderer()
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    assert all(ax.get_title().startswith("label: T-shirt/top") for ax in fig.axes)
    for (i, a), (j, b) in itertools.combinations(enumerate(titles), 2):
        assert not a.overlaps(b), (i, j, a, b)
    # Nor does a title run into another image, or off the figure.
    for i, title in enumerate(titles):
        assert fig.bbox.contains(title.x0, title.y0) and fig.bbox.contains(title.x1, title.y1), title
        for j, ax in enumerate(fig.axes):
            assert i == j or not title.overlaps(ax.get_window_extent(renderer)), (i, j)


def test_the_error_figures_are_written_in_the_format_asked_for(tmp_path):
    labels = np.array([0, 1])
    probs = np.full((2, 10), 0.01)
    probs[0, 0], probs[1, 7] = 0.9, 0.9
    confusion = np.diag([1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    confusion[1, 7] = 1
    _, written = save_error_figures(np.zeros((2, 28, 28, 1), np.uint8), labels, probs, confusion, tmp_path, fmt="png")
    assert written.endswith(f"Wrote {tmp_path / 'confusion.png'} and {tmp_path / 'mistakes.png'}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion.png", "mistakes.png"]
    assert all(p.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") for p in tmp_path.iterdir())
