"""The figures that show a model honestly: curves, confusion matrix, mistakes, calibration,
embedding, dataset overview and samples.

Built with matplotlib's object API (no pyplot state), so they render the same in a script, a test
and a notebook, where each result displays inline. They take plain arrays, not models.
"""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from ..display import plot_text
from ..preprocessing import Preprocessing
from .calibration import expected_calibration_error, reliability
from .contact_sheet import Section, Tile, contact_sheet
from .metrics import Metrics

TRAIN, VAL, WRONG, RIGHT = "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c"
PNG_DPI = 110
PNG_COMPRESSION = 1
# Figures whose labels are fixed text get fixed margins; those labelled with class names (any
# length) keep matplotlib's constrained layout, which costs ~0.1 s of extra drawing per figure.
FIXED_MARGINS = {"left": 0.06, "right": 0.99, "bottom": 0.13, "top": 0.92}


class NotebookFigure(Figure):
    """A matplotlib Figure that shows itself inline in Jupyter, whatever backend is active."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


# -- figures ------------------------------------------------------------------------------------
def _smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    out, last = np.empty(len(values)), values[0] if len(values) else 0.0
    for i, v in enumerate(values):
        last = weight * last + (1 - weight) * v
        out[i] = last
    return out


def plot_curves(history: dict, fine_tune: dict | None = None) -> Figure:
    """How training went. A head trained in epochs: loss and accuracy per step (raw and smoothed)
    and per epoch, train and validation, with stage 2 (fine-tuning), if any, continuing to the
    right of a marked boundary. A head fitted along a path of L2 strengths: loss and accuracy at
    each strength, the kept one marked, with stage 2's epochs, if any, in a row below."""
    tuned = fine_tune if fine_tune and fine_tune.get("train_loss") else None
    if not history.get("l2"):
        fig = NotebookFigure(figsize=(11, 4))
        fig.subplots_adjust(**FIXED_MARGINS, wspace=0.15)
        stages = [("stage 1", history, 0)] + ([("stage 2", tuned, len(history.get("train_loss", [])))] if tuned else [])
        _plot_epochs(fig.subplots(1, 2), stages)
        return fig
    fig = NotebookFigure(figsize=(11, 7.6 if tuned else 4))
    fig.subplots_adjust(**(FIXED_MARGINS | {"bottom": 0.07, "top": 0.95} if tuned else FIXED_MARGINS), wspace=0.15)
    axes = fig.subplots(2 if tuned else 1, 2, squeeze=False)
    if tuned:
        fig.subplots_adjust(hspace=0.35)
        _plot_epochs(axes[1], [("stage 2", tuned, 0)], title=" (stage 2: fine-tuning)")
    _plot_path(axes[0], history, title=" (stage 1: the head)" if tuned else "")
    return fig


def _plot_epochs(axes, stages: list[tuple[str, dict, int]], title: str = "") -> None:
    """Loss and accuracy per step and epoch of consecutive stages, each `(name, history, offset)`."""
    first_stage, last_stage = stages[0][1], stages[-1][1]
    n1 = len(first_stage.get("train_loss", []))
    best = (stages[-1][2] + last_stage["best_epoch"]) if last_stage.get("best_epoch") else None
    if best is None and len(stages) > 1:  # stage 2 kept nothing: stage 1's best stands
        best = first_stage.get("best_epoch")
    for ax, key, name in zip(axes, ("loss", "accuracy"), ("Loss", "Accuracy")):
        for n, (_stage, h, offset) in enumerate(stages):
            first = n == 0
            step_values = np.array(h.get(f"step_{key}", []), dtype=float)
            if len(step_values):
                x = offset + np.arange(1, len(step_values) + 1) / (h.get("steps_per_epoch") or 1)
                ax.plot(x, step_values, color=TRAIN, alpha=0.2, lw=0.8, label="train, per step" if first else None)
                ax.plot(
                    x, _smooth(step_values), color=TRAIN, lw=1.5, label="train, per step (smoothed)" if first else None
                )
            epochs = offset + np.arange(1, len(h.get("train_loss", [])) + 1)
            ax.plot(
                epochs, h.get(f"train_{key}", []), "o", color=TRAIN, ms=3, label="train, epoch mean" if first else None
            )
            ax.plot(
                epochs, h.get(f"val_{key}", []), "o-", color=VAL, ms=3, lw=1.5, label="validation" if first else None
            )
        if len(stages) > 1:
            ax.axvline(n1 + 0.5, color="black", lw=1.2, label="stage 1 | stage 2 (fine-tuning)")
        if best:
            ax.axvline(best, color="grey", ls="--", lw=1, label=f"best epoch ({best}, restored)")
        _finish_axis(ax, key, name + title, "epoch")
    axes[0].legend(fontsize=8, loc="upper right")


def _plot_path(axes, history: dict, title: str = "") -> None:
    """Train and validation loss and accuracy at each L2 strength tried, weaker to the right."""
    l2 = np.array(history["l2"])
    kept = l2[history["best_epoch"] - 1] if history.get("best_epoch") else None
    for ax, key, name in zip(axes, ("loss", "accuracy"), ("Loss", "Accuracy")):
        ax.plot(l2, history.get(f"train_{key}", []), "o-", color=TRAIN, ms=3, lw=1.5, label="train")
        ax.plot(l2, history.get(f"val_{key}", []), "o-", color=VAL, ms=3, lw=1.5, label="validation")
        if kept is not None:
            ax.axvline(kept, color="grey", ls="--", lw=1, label=f"kept: L2 {kept:.3g} (lowest validation loss)")
        ax.set_xscale("log")
        ax.set_xlim(l2.max() * 2, l2.min() / 2)  # weaker penalty, more closely fitted: to the right
        _finish_axis(ax, key, name + title, "L2 strength (weaker →)")
    axes[0].legend(fontsize=8, loc="upper right")


def _finish_axis(ax, key: str, title: str, xlabel: str) -> None:
    """Title, x label and grid of a curves panel; accuracy panels span at least 0.5 to 1."""
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.grid(alpha=0.3)
    if key == "accuracy":
        ax.set_ylim(min(0.5, ax.get_ylim()[0]), 1.02)


def _short(name: str, width: int = 18, lines: int = 2) -> str:
    name = plot_text(name)
    return "\n".join(textwrap.wrap(name, width, max_lines=lines, placeholder="…")) or name


def plot_confusion(metrics: Metrics, title: str = "Confusion matrix") -> Figure:
    """Counts and row-normalised percentages; the figure grows with the classes so labels never
    collide, and cell text shrinks, then goes, as classes multiply."""
    n = len(metrics.classes)
    cm = np.array(metrics.confusion, dtype=np.int64)
    rows = cm.sum(1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros(cm.shape), where=rows > 0)
    cell = 0.9 if n <= 8 else 0.5 if n <= 20 else 0.36
    side = max(4.5, n * cell + 2.5)
    fig = NotebookFigure(figsize=(side + 1, side), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, shrink=0.7, label="share of the true class (row)")
    tick_font = 9 if n <= 20 else 7
    labels = [_short(c) for c in metrics.classes]
    ax.set_xticks(range(n), labels, rotation=90 if n > 6 else 30, ha="center" if n > 6 else "right", fontsize=tick_font)
    ax.set_yticks(range(n), labels, fontsize=tick_font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"{title} (n = {metrics.count}, accuracy {metrics.accuracy:.3f})")
    if n <= 30:
        font = 10 if n <= 8 else 7 if n <= 15 else 5
        for i in range(n):
            for j in range(n):
                if cm[i, j] or i == j:
                    text = f"{cm[i, j]}\n{share[i, j]:.0%}" if n <= 15 else str(cm[i, j])
                    ax.text(
                        j,
                        i,
                        text,
                        ha="center",
                        va="center",
                        fontsize=font,
                        color="white" if share[i, j] > 0.5 else "black",
                    )
    return fig


def plot_calibration(y: np.ndarray, probs: np.ndarray, uncalibrated: np.ndarray | None = None) -> Figure:
    """Reliability diagram: accuracy against confidence per bin, with how many predictions fall in each."""
    fig = NotebookFigure(figsize=(5.5, 6))
    fig.subplots_adjust(left=0.13, right=0.97, bottom=0.09, top=0.95, hspace=0.08)
    top, bottom = fig.subplots(2, 1, height_ratios=[3, 1], sharex=True)
    top.plot([0, 1], [0, 1], ls="--", color="grey", lw=1, label="perfectly calibrated")
    curves = [("calibrated" if uncalibrated is not None else "model", probs, TRAIN)]
    if uncalibrated is not None:
        curves.insert(0, ("before temperature scaling", uncalibrated, "#999999"))
    for name, p, colour in curves:
        r = reliability(y, p)
        filled = r["count"] > 0
        centres = (r["edges"][:-1] + r["edges"][1:]) / 2
        top.plot(r["confidence"][filled], r["accuracy"][filled], "-", color=colour, lw=1, alpha=0.6)
        # Marker area follows the bin's image count: a bin of two images is noise, not a trend.
        sizes = 12 + 250 * r["count"][filled] / max(r["count"].max(), 1)
        top.scatter(
            r["confidence"][filled],
            r["accuracy"][filled],
            s=sizes,
            color=colour,
            zorder=3,
            clip_on=False,
            label=f"{name}: ECE {expected_calibration_error(y, p):.3f}",
        )
        if p is probs:
            bottom.bar(centres, r["count"], width=1 / len(centres), color=colour, alpha=0.7, edgecolor="white")
    top.set_ylabel("accuracy")
    top.set_title("Reliability diagram")
    top.legend(fontsize=8, loc="upper left")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.grid(alpha=0.3)
    bottom.set_xlabel("confidence (top-1 probability)")
    bottom.set_ylabel("images")
    return fig


def plot_mistakes(
    paths: list[Path],
    y_true: np.ndarray,
    probabilities: np.ndarray,
    classes: list[str],
    preprocessing: Preprocessing,
    split: str,
    wrong: int = 12,
    right: int = 6,
) -> Image.Image:
    """The most confidently wrong images (red) and the least confident right ones (green), as the
    model saw them (resized and cropped): a contact sheet (a PIL image)."""
    predicted, confidence = probabilities.argmax(1), probabilities.max(1)
    mistakes = [i for i in np.argsort(-confidence) if predicted[i] != y_true[i]][:wrong]
    unsure = [i for i in np.argsort(confidence) if predicted[i] == y_true[i]][:right]
    sections = []
    for title, items, colour in (
        ("Most confident mistakes", mistakes, WRONG),
        ("Least confident correct predictions", unsure, RIGHT),
    ):
        tiles = [
            Tile(paths[i], [f"true: {classes[y_true[i]]}", f"pred {confidence[i]:.0%}: {classes[predicted[i]]}"])
            for i in items
        ]
        sections.append(Section(f"{title} ({split} split)", colour, tiles))
    return contact_sheet(sections, preprocessing)


def principal_components(x: np.ndarray, k: int, iterations: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """The projection of centred `x` (N, D) on its top `k` principal axes, and the share of the
    variance each explains, by randomised subspace iteration (Halko et al. 2011; seeded, so the
    same every time). A full SVD of 1,000 x 1,280 features took seconds here; this, milliseconds."""
    x = np.asarray(x, np.float64)
    width = min(k + 10, *x.shape)
    basis = np.random.default_rng(0).standard_normal((x.shape[1], width))
    for _ in range(iterations):
        basis, _ = np.linalg.qr(x.T @ (x @ basis))
    u, s, vt = np.linalg.svd(x @ basis, full_matrices=False)
    return u[:, :k] * s[:k], s[:k] ** 2 / max(float(np.sum(x * x)), 1e-12)


def plot_embedding(
    features: np.ndarray, y_true: np.ndarray, probabilities: np.ndarray, classes: list[str], split: str
) -> Figure:
    """2-D PCA of the features coloured by true class; misclassified images circled in black."""
    x = features - features.mean(0)
    fig = NotebookFigure(figsize=(7, 6))
    fig.subplots_adjust(left=0.11, right=0.97, bottom=0.09, top=0.94)
    ax = fig.subplots()
    if len(x) >= 2:
        xy, explained = principal_components(x, 2)
        cmap = matplotlib.colormaps["tab20" if len(classes) > 10 else "tab10"]
        wrong = probabilities.argmax(1) != y_true
        for c, name in enumerate(classes):
            m = y_true == c
            if m.any():
                ax.scatter(
                    xy[m, 0],
                    xy[m, 1],
                    s=22,
                    color=cmap(c % cmap.N),
                    label=plot_text(name),
                    alpha=0.85,
                    edgecolor="none",
                )
        if wrong.any():
            ax.scatter(
                xy[wrong, 0], xy[wrong, 1], s=90, facecolor="none", edgecolor="black", lw=1.3, label="misclassified"
            )
        ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
        ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)")
        if len(classes) <= 20:
            ax.legend(fontsize=8, markerscale=1.2, loc="best")
    ax.set_title(f"Backbone features of the {split} split, PCA")
    ax.grid(alpha=0.3)
    return fig


def plot_dataset(counts: dict[str, dict[str, int]]) -> Figure:
    """Images per class per split."""
    classes = list(next(iter(counts.values()), {}).keys())
    fig = NotebookFigure(figsize=(8, max(2.5, 0.32 * len(classes) + 1.2)), layout="constrained")
    ax = fig.subplots()
    left = np.zeros(len(classes))
    for split, colour in zip(counts, (TRAIN, VAL, RIGHT)):
        values = np.array([counts[split].get(c, 0) for c in classes])
        ax.barh(range(len(classes)), values, left=left, color=colour, label=split)
        left += values
    ax.set_yticks(range(len(classes)), [_short(c, 30, 1) for c in classes], fontsize=8 if len(classes) > 20 else 10)
    ax.invert_yaxis()
    ax.set_xlabel("images")
    ax.set_title("Images per class and split")
    ax.legend()
    return fig


def plot_samples(images: dict[str, list[Path]], preprocessing: Preprocessing) -> Image.Image:
    """Sample images of each class (`images`: class -> the paths to show): a contact sheet (a PIL image)."""
    sections = [Section(name, "#222222", [Tile(path, []) for path in paths]) for name, paths in images.items()]
    return contact_sheet(sections, preprocessing)


def png_bytes(figure: Figure | Image.Image) -> bytes:
    """A figure (or a contact sheet) as a PNG file's bytes. Light zlib compression: level 6 took
    three times as long for files a fifth bigger."""
    buf = io.BytesIO()
    if isinstance(figure, Image.Image):
        figure.save(buf, format="png", compress_level=PNG_COMPRESSION)
    else:
        figure.savefig(buf, format="png", dpi=PNG_DPI, pil_kwargs={"compress_level": PNG_COMPRESSION})
    return buf.getvalue()
