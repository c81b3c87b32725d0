import xml.etree.ElementTree as ET

import numpy as np

from mnist_jax.apps.plotting import (plot_classification, plot_confident_mistakes, plot_confusion_matrix, plot_history,
                                     save_figure)

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
    assert [ax.get_title() for ax in fig.axes] == ["label: T-shirt/top / prediction: Shirt",
                                                   "label: Ankle boot / prediction: Ankle boot"]
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
