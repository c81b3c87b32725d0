"""The notebook's two figures, drawn with matplotlib's object API (no pyplot global state).

    fig = plot_history(history)                       # loss and accuracy per epoch, 0.98 dotted
    fig = plot_classification(images, labels, preds)  # 2x3 test digits, "label: L / prediction: P"
    save_figure(fig, "figures/training.svg")

The figures of test images name the classes by `class_names` (a dataset's, `datasets.DATASETS[name]
.class_names`); without them, or with MNIST's digits, by their number, as the notebook does.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import jax
import matplotlib
import numpy as np
from matplotlib.figure import Figure

from mnist_jax.apps.inference import classify, predict
from mnist_jax.config import TrainConfig
from mnist_jax.errors import UserError
from mnist_jax.files import write_atomic
from mnist_jax.model import Model, Params
from mnist_jax.sweep import summary, value_name


def _name(c: int, class_names: Sequence[str] | None) -> str:
    return class_names[int(c)] if class_names is not None else str(int(c))


def _named_classes(class_names: Sequence[str] | None) -> Sequence[str] | None:
    """The class names, or None for none or MNIST's digits (axes then keep their number ticks)."""
    if class_names is None or list(class_names) == [str(i) for i in range(len(class_names))]:
        return None
    return class_names


def _one_epoch_axis(ax) -> None:
    """An epoch axis for a single epoch: a unit wide, its one tick, the point in the middle (matplotlib's
    own limits for one point are -0.04 to 0.04)."""
    ax.set_xlim(-0.5, 0.5)
    ax.set_xticks([0])


def plot_history(history: Mapping[str, Sequence]) -> Figure:
    """Train/test loss (top) and accuracy (bottom) per epoch, as the notebook's `plot_history`, and
    the validation split's where the run holds one out.

    For a multi-seed history (a list of values per epoch), the mean over seeds, with the band
    from the lowest to the highest seed shaded around it. A single epoch is drawn as points.
    """
    epochs = np.arange(len(history["train_loss"]))
    seeds = np.ndim(history["train_loss"][0]) if len(epochs) else 0
    one = len(epochs) == 1
    marker = "o" if one else None  # a line through one point draws nothing
    span = np.array([-0.5, 0.5]) if one else epochs  # what the band and the 0.98 line stretch across
    fig = Figure(figsize=(8, 6))
    axes = fig.subplots(2, 1)

    def curve(ax, key: str, label: str) -> None:
        values = np.asarray(history[key], dtype=float)
        if values.ndim == 1:
            ax.plot(epochs, values, marker=marker, label=label)
            return
        line, = ax.plot(epochs, values.mean(1), marker=marker, label=f"{label} (mean)")
        ax.fill_between(span, np.resize(values.min(1), len(span)), np.resize(values.max(1), len(span)),
                        color=line.get_color(), alpha=0.25, linewidth=0, label=f"{label} (min-max)")

    for ax in axes:
        if one:
            _one_epoch_axis(ax)
        else:
            ax.set_xlim(0, len(epochs))
    held_out = any(value is not None for value in history.get("validation_loss", []))  # --validation-examples
    curve(axes[0], "train_loss", "Train Loss")
    curve(axes[0], "test_loss", "Test Loss")
    if held_out:
        curve(axes[0], "validation_loss", "Validation Loss")
    axes[0].set_ylabel("Loss", fontsize=13)
    axes[0].legend(fontsize=13 if not seeds else 10)

    curve(axes[1], "train_accuracy", "Train Accuracy")
    curve(axes[1], "test_accuracy", "Test Accuracy")
    if held_out:
        curve(axes[1], "validation_accuracy", "Validation Accuracy")
    axes[1].plot(span, [0.98] * len(span), "k:", label="Accuracy 0.98")
    axes[1].set_ylabel("Accuracy", fontsize=13)
    axes[1].set_xlabel("Epoch", fontsize=13)
    axes[1].legend(fontsize=13 if not seeds else 10)

    title = "Train result"
    if seeds:
        title += f": {len(history['train_loss'][0])} seeds, mean and min-max"
    fig.suptitle(title, fontsize=15)
    fig.tight_layout()
    return fig


def plot_sweep(config: TrainConfig, history: Mapping[str, Sequence]) -> Figure:
    """A sweep (`mnist_jax.sweep`): each value's test accuracy per epoch (left, the mean over its
    seeds), and its final and best test accuracy against the value (right; with several seeds the
    final's min-max as error bars), on a log axis for the learning rate and the weight decay."""
    name, values = config.sweep_name, config.sweep_values
    accuracy = np.asarray(history["test_accuracy"], dtype=float).reshape(-1, len(values), config.seeds).mean(2)
    rows = summary(config, history)
    fig = Figure(figsize=(12, 5))
    curves, ends = fig.subplots(1, 2)
    for j, value in enumerate(values):
        curves.plot(np.arange(len(accuracy)), accuracy[:, j], marker="o", label=value_name(name, value))
    if len(accuracy) == 1:
        _one_epoch_axis(curves)
    curves.set_xlabel("Epoch", fontsize=13)
    curves.set_ylabel("Test accuracy", fontsize=13)
    curves.legend(fontsize=10)
    final = np.array([r["final"] for r in rows])
    below, above = final - [r["final_min"] for r in rows], np.array([r["final_max"] for r in rows]) - final
    ends.errorbar(values, final, yerr=(below, above) if config.seeds > 1 else None, marker="o", capsize=4,
                  label="final" + (f" (mean, min-max of {config.seeds} seeds)" if config.seeds > 1 else ""))
    ends.plot(values, [r["best"] for r in rows], "s--", label="best epoch's")
    if name != "warmup_epochs":
        ends.set_xscale("log")
    ends.set_xlabel(name, fontsize=13)
    ends.set_ylabel("Test accuracy", fontsize=13)
    ends.legend(fontsize=10)
    fig.suptitle(f"Sweep of {name}: {len(values)} values x {config.seeds} seed{'s' if config.seeds > 1 else ''}, "
                 f"{len(accuracy)} epoch{'s' if len(accuracy) > 1 else ''}", fontsize=15)
    fig.tight_layout()
    return fig


def history_figure(config: TrainConfig, history: Mapping[str, Sequence], fmt: str = "svg") -> tuple[Figure, str]:
    """What `plot-history` draws of a run, and the file name it goes to: for a sweep, whose columns
    are its values rather than seeds, `plot_sweep` as sweep.FMT; else `plot_history` as training.FMT."""
    if config.sweep is not None:
        if not history["test_accuracy"]:  # a sweep's figure compares its values' epochs: none to compare yet
            raise UserError("the sweep has no epoch to draw yet")
        return plot_sweep(config, history), f"sweep.{fmt}"
    return plot_history(history), f"training.{fmt}"


def plot_classification(images: np.ndarray, labels: Sequence[int], predictions: Sequence[int],
                        size: tuple[int, int] = (2, 3), class_names: Sequence[str] | None = None) -> Figure:
    """A grid of images titled with their label and the model's prediction."""
    rows, cols = size
    named = _named_classes(class_names) is not None
    fig = Figure(figsize=(cols * 3, rows * (3.3 if named else 3)))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label, prediction in zip(axes.flat, images, labels, predictions):
        ax.imshow(np.asarray(image).squeeze(-1) if np.ndim(image) == 3 else image, cmap="gray")
        label, prediction = _name(label, class_names), _name(prediction, class_names)
        if named:  # "label: T-shirt/top / prediction: Ankle boot" is wider than its image: one line each
            ax.set_title(f"label: {label}\nprediction: {prediction}", y=-0.03, va="top")
        else:
            ax.set_title(f"label: {label} / prediction: {prediction}", y=-0.13)
    fig.suptitle("Classification result", fontsize=15)
    fig.tight_layout()
    if named:  # the first pass sized the square images; the second makes room for two lines under each
        fig.tight_layout()
    return fig


def plot_confusion_matrix(confusion: np.ndarray, class_names: Sequence[str] | None = None) -> Figure:
    """Counts of (true, predicted) test classes; colour on a log scale so the few errors show."""
    confusion = np.asarray(confusion)
    names = _named_classes(class_names)
    fig = Figure(figsize=(7, 6) if names is None else (8, 7))
    ax = fig.subplots()
    image = ax.imshow(np.log10(confusion + 1), cmap="Blues")
    for (t, p), count in np.ndenumerate(confusion):
        if count:
            ax.text(p, t, str(count), ha="center", va="center", fontsize=9,
                    color="white" if t == p else "black")
    ax.set_xticks(range(len(confusion)), labels=names)
    ax.set_yticks(range(len(confusion)), labels=names)
    if names is not None:
        ax.tick_params(axis="x", labelrotation=45)
    ax.set_xlabel("Predicted", fontsize=13)
    ax.set_ylabel("True", fontsize=13)
    errors = int(confusion.sum() - np.trace(confusion))
    what = "digits" if names is None else "images"
    ax.set_title(f"Confusion matrix: {errors} errors in {int(confusion.sum())} test {what}", fontsize=13)
    fig.colorbar(image, ax=ax, label="log10(count + 1)")
    fig.tight_layout()
    return fig


def plot_confident_mistakes(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                            size: tuple[int, int] = (3, 6), class_names: Sequence[str] | None = None) -> Figure:
    """The misclassified images the model was surest of, titled with true label, prediction and probability."""
    predictions = probabilities.argmax(1)
    wrong = np.flatnonzero(predictions != labels)
    order = wrong[np.argsort(-probabilities[wrong, predictions[wrong]])][: size[0] * size[1]]
    rows, cols = size
    fig = Figure(figsize=(cols * 2, rows * 2.8))
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, order):
        ax.imshow(images[i].squeeze(-1), cmap="gray")
        ax.set_title(f"true {_name(labels[i], class_names)} / pred {_name(predictions[i], class_names)}\n"
                     f"p = {probabilities[i, predictions[i]]:.3f}",
                     fontsize=9)
    fig.suptitle(f"Most confident mistakes ({len(wrong)} errors in all)", fontsize=15)
    fig.tight_layout()
    return fig


def error_figures_data(params: Params, model: Model, images: np.ndarray, labels: np.ndarray,
                       batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """What the error figures show: the probabilities of each test image (N, classes) and the
    confusion matrix (true class by predicted class)."""
    from mnist_jax.steps import confusion_matrix

    probabilities = classify(params, images, model, batch_size=batch_size)
    confusion = np.asarray(confusion_matrix(labels, probabilities.argmax(1), probabilities.shape[1]))
    return probabilities, confusion


def save_error_figures(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, confusion: np.ndarray,
                       out_dir: Path, size: tuple[int, int] = (3, 6), class_names: Sequence[str] | None = None,
                       fmt: str = "svg") -> list[str]:
    """`plot-errors`' figures from `error_figures_data`: out_dir/confusion.FMT and out_dir/mistakes.FMT;
    what the command says of them (each class's accuracy, the errors, the files)."""
    confusion_file, mistakes_file = out_dir / f"confusion.{fmt}", out_dir / f"mistakes.{fmt}"
    save_figure(plot_confusion_matrix(confusion, class_names), confusion_file)
    save_figure(plot_confident_mistakes(images, labels, probabilities, size=size, class_names=class_names),
                mistakes_file)
    names = class_names or [str(c) for c in range(len(confusion))]
    accuracy = np.diag(confusion) / np.maximum(confusion.sum(1), 1)
    return ["per-class test accuracy: " + "  ".join(f"{names[c]}: {a:.4f}" for c, a in enumerate(accuracy)),
            f"{int(confusion.sum() - np.trace(confusion))} errors in {len(labels)}. "
            f"Wrote {confusion_file} and {mistakes_file}"]


def save_explanations(digits: Sequence[np.ndarray], explained, outs: Sequence[Path],
                      class_names: Sequence[str] | None = None) -> Iterator[tuple[Sequence[int], Sequence[float]]]:
    """Write each digit's explanation (an `explain.Explanation` of `digits`) to its file in `outs`,
    yielding its classes and probabilities once it is written."""
    for i, out in enumerate(outs):
        classes, probabilities = explained.classes[i], explained.probabilities[i]
        save_figure(plot_explanation(digits[i], classes, probabilities, explained.attributions[i], class_names), out)
        yield classes, probabilities


def figure_bytes(fig: Figure, fmt: str = "svg") -> bytes:
    """The figure as a file's content in `fmt` (svg, png, pdf, ...); SVGs are byte-stable across runs."""
    if fmt not in fig.canvas.get_supported_filetypes():
        raise UserError(f"cannot save a figure as .{fmt}; use one of "
                        f"{', '.join(sorted(fig.canvas.get_supported_filetypes()))}")
    buffer = io.BytesIO()
    # A fixed hash salt and no date keep committed SVGs from changing when the data did not.
    with matplotlib.rc_context({"svg.hashsalt": "mnist-jax"}):
        fig.savefig(buffer, format=fmt, metadata={"Date": None} if fmt == "svg" else None)
    return buffer.getvalue()


def save_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Save as the file suffix says (SVG, PNG, ...), atomically."""
    content = figure_bytes(fig, os.fspath(path).rsplit(".", 1)[-1].lower())
    try:
        write_atomic(path, content)
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror})") from None


def classification_sample(params: Params, model: Model, images: np.ndarray, labels: np.ndarray,
                          key: jax.Array, size: tuple[int, int] = (2, 3),
                          class_names: Sequence[str] | None = None) -> Figure:
    """`plot_classification` of randomly chosen test images, as the notebook's last cell."""
    idx = np.asarray(jax.random.randint(key, (size[0] * size[1],), 0, len(labels)))
    predictions = np.asarray(predict(params, images[idx], model))
    return plot_classification(images[idx], labels[idx], predictions, size, class_names)


def plot_explanation(digit: np.ndarray, classes: Sequence[int], probabilities: Sequence[float],
                     attributions: np.ndarray, class_names: Sequence[str] | None = None) -> Figure:
    """The 28x28 input the model saw, then for each of its top classes where the evidence lies:
    each pixel's integrated gradient (mnist_jax.apps.explain), red for the class and blue against it,
    on one scale, over the digit's outline."""
    fig = Figure(figsize=(3 * (1 + len(classes)) + 0.6, 3.4))
    axes = fig.subplots(1, 1 + len(classes), squeeze=False)[0]
    image = np.asarray(digit).squeeze(-1)
    axes[0].imshow(image, cmap="gray")
    axes[0].set_title("the input, 28 x 28")
    scale = float(np.abs(attributions).max()) or 1.0
    for ax, c, p, a in zip(axes[1:], classes, probabilities, attributions):
        shown = ax.imshow(a, cmap="RdBu_r", vmin=-scale, vmax=scale)
        ax.contour(image, levels=[127.5], colors="0.4", linewidths=0.6)
        ax.set_title(f"evidence for {_name(c, class_names)} ({p:.1%})")
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(shown, ax=list(axes), shrink=0.8, label="logit per pixel")
    return fig
