"""Show the model honestly: curves, confusion matrix, per-class table, mistakes, calibration,
embedding, dataset overview, and one self-contained `report.html` holding all of them.

Figures are built with matplotlib's object API (no pyplot state), so they render the same in a
script, a test and a notebook, where each `plot_*` result displays inline.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from .calibration import expected_calibration_error, reliability, softmax
from .data.dataset import scan
from .data.images import ImageDecodeError, load_image
from .metrics import Metrics, compute_metrics

if TYPE_CHECKING:
    from .classifier import Classifier

TRAIN, VAL, WRONG, RIGHT = "#1f77b4", "#ff7f0e", "#d62728", "#2ca02c"
PNG_DPI = 110


class NotebookFigure(Figure):
    """A matplotlib Figure that shows itself inline in Jupyter, whatever backend is active."""

    def _repr_png_(self) -> bytes:
        return png_bytes(self)


@dataclass
class EvalData:
    """Everything the evaluation plots need, for one labelled split."""

    split: str
    paths: list[Path]
    y_true: np.ndarray
    probabilities: np.ndarray
    features: np.ndarray
    metrics: Metrics
    uncalibrated: np.ndarray | None = None  # probabilities before temperature scaling


def collect(clf: Classifier, data: str | Path | None = None) -> EvalData:
    """The model's predictions on the held-out split it was evaluated on (features come from the
    cache), or on every image of a labelled folder `data`."""
    if data is None:
        paths, labels, split = clf.reference_images()
    else:
        folder = clf.labelled_folder(data)
        paths, labels, split = folder.paths, folder.labels, folder.split
    extraction = clf.extractor.extract(paths, description="Evaluating", quiet=True)
    y = np.asarray(labels, dtype=np.int64)[extraction.ok]
    features = extraction.features
    probs = clf.predict_features(features)
    uncalibrated = softmax(clf.logits(features), 1.0) if clf.temperature != 1.0 else None
    kept = [paths[i] for i in extraction.ok]
    return EvalData(split, kept, y, probs, features, compute_metrics(y, probs, clf.classes), uncalibrated)


# -- tables -------------------------------------------------------------------------------------
def per_class_rows(metrics: Metrics) -> list[dict]:
    """Per class, then macro and weighted averages, then top-k accuracy (sklearn's report layout:
    accuracy rows carry their value in the f1 column)."""
    rows = [
        {"class": c, "precision": p, "recall": r, "f1": f, "support": s}
        for c, p, r, f, s in zip(metrics.classes, metrics.precision, metrics.recall, metrics.f1, metrics.support)
    ]
    support = np.array(metrics.support, dtype=np.float64)
    weights = support / support.sum() if support.sum() else support
    for name, w in (("macro avg", np.full(len(rows), 1 / max(len(rows), 1))), ("weighted avg", weights)):
        rows.append({"class": name, **{k: float(np.dot(w, [r[k] for r in rows[: len(metrics.classes)]])) for k in ("precision", "recall", "f1")},
                     "support": int(support.sum())})
    for k, acc in metrics.top_k_accuracy.items():
        rows.append({"class": "accuracy" if k == 1 else f"top-{k} accuracy", "precision": "", "recall": "", "f1": acc, "support": metrics.count})
    return rows


def write_per_class_csv(metrics: Metrics, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, ["class", "precision", "recall", "f1", "support"])
        writer.writeheader()
        for row in per_class_rows(metrics):
            writer.writerow({k: (f"{v:.6f}" if isinstance(v, float) else v) for k, v in row.items()})


# -- figures ------------------------------------------------------------------------------------
def _smooth(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    out, last = np.empty(len(values)), values[0] if len(values) else 0.0
    for i, v in enumerate(values):
        last = weight * last + (1 - weight) * v
        out[i] = last
    return out


def plot_curves(history: dict, fine_tune: dict | None = None) -> Figure:
    """Loss and accuracy per step (raw and smoothed) and per epoch, train and validation; stage 2
    (fine-tuning), if any, continues to the right of a marked boundary."""
    fig = NotebookFigure(figsize=(11, 4), layout="constrained")
    stages = [("stage 1", history, 0)]
    n1 = len(history.get("train_loss", []))
    if fine_tune and fine_tune.get("train_loss"):
        stages.append(("stage 2", fine_tune, n1))
    best = (n1 + fine_tune["best_epoch"]) if fine_tune and fine_tune.get("best_epoch") else history.get("best_epoch")
    for ax, key, title in zip(fig.subplots(1, 2), ("loss", "accuracy"), ("Loss", "Accuracy")):
        for n, (stage, h, offset) in enumerate(stages):
            first = n == 0
            step_values = np.array(h.get(f"step_{key}", []), dtype=float)
            if len(step_values):
                x = offset + np.arange(1, len(step_values) + 1) / (h.get("steps_per_epoch") or 1)
                ax.plot(x, step_values, color=TRAIN, alpha=0.2, lw=0.8, label="train, per step" if first else None)
                ax.plot(x, _smooth(step_values), color=TRAIN, lw=1.5, label="train, per step (smoothed)" if first else None)
            epochs = offset + np.arange(1, len(h.get("train_loss", [])) + 1)
            ax.plot(epochs, h.get(f"train_{key}", []), "o", color=TRAIN, ms=3, label="train, epoch mean" if first else None)
            ax.plot(epochs, h.get(f"val_{key}", []), "o-", color=VAL, ms=3, lw=1.5, label="validation" if first else None)
        if len(stages) > 1:
            ax.axvline(n1 + 0.5, color="black", lw=1.2, label="stage 1 | stage 2 (fine-tuning)")
        if best:
            ax.axvline(best, color="grey", ls="--", lw=1, label=f"best epoch ({best}, restored)")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if key == "accuracy":
            ax.set_ylim(min(0.5, ax.get_ylim()[0]), 1.02)
    fig.axes[0].legend(fontsize=8, loc="upper right")
    return fig


def _short(name: str, width: int = 18, lines: int = 2) -> str:
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
                    ax.text(j, i, text, ha="center", va="center", fontsize=font, color="white" if share[i, j] > 0.5 else "black")
    return fig


def plot_calibration(y: np.ndarray, probs: np.ndarray, uncalibrated: np.ndarray | None = None) -> Figure:
    """Reliability diagram: accuracy against confidence per bin, with how many predictions fall in each."""
    fig = NotebookFigure(figsize=(5.5, 6), layout="constrained")
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
        top.scatter(r["confidence"][filled], r["accuracy"][filled], s=sizes, color=colour, zorder=3, clip_on=False,
                    label=f"{name}: ECE {expected_calibration_error(y, p):.3f}")
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


def _thumbnail(path: Path, preprocessing) -> np.ndarray | None:
    try:
        return np.asarray(preprocessing.crop(load_image(path, preprocessing.resize_short)))
    except ImageDecodeError:
        return None


def plot_mistakes(ev: EvalData, classes: list[str], preprocessing, wrong: int = 12, right: int = 6) -> Figure:
    """The most confidently wrong images (red) and the least confident right ones (green), as the
    model saw them (resized and cropped)."""
    predicted, confidence = ev.probabilities.argmax(1), ev.probabilities.max(1)
    mistakes = [i for i in np.argsort(-confidence) if predicted[i] != ev.y_true[i]][:wrong]
    unsure = [i for i in np.argsort(confidence) if predicted[i] == ev.y_true[i]][:right]
    cols = 6
    sections = [("Most confident mistakes", mistakes, WRONG), ("Least confident correct predictions", unsure, RIGHT)]
    rows = [max(1, -(-len(items) // cols)) for _, items, _ in sections]
    fig = NotebookFigure(figsize=(cols * 2.1, sum(rows) * 2.5 + 0.8), layout="constrained")
    subfigs = fig.subfigures(2, 1, height_ratios=rows)
    for sub, (title, items, colour), n_rows in zip(subfigs, sections, rows):
        sub.suptitle(f"{title} ({ev.split} split)", fontsize=11, color=colour, fontweight="bold")
        axes = np.atleast_1d(sub.subplots(n_rows, cols)).ravel()
        for ax in axes:
            ax.axis("off")
        if not items:
            axes[0].text(0, 0.5, "none", fontsize=10)
        for ax, i in zip(axes, items):
            image = _thumbnail(ev.paths[i], preprocessing)
            if image is not None:
                ax.imshow(image)
            ax.set_title(
                f"true: {_short(classes[ev.y_true[i]], 16, 1)}\npred: {_short(classes[predicted[i]], 16, 1)} {confidence[i]:.0%}",
                fontsize=8, color=colour,
            )
    return fig


def plot_embedding(ev: EvalData, classes: list[str]) -> Figure:
    """2-D PCA of the features coloured by true class; misclassified images circled in black."""
    x = ev.features - ev.features.mean(0)
    fig = NotebookFigure(figsize=(7, 6), layout="constrained")
    ax = fig.subplots()
    if len(x) >= 2:
        _, s, vt = np.linalg.svd(x, full_matrices=False)
        xy = x @ vt[:2].T
        explained = s[:2] ** 2 / np.sum(s**2)
        cmap = matplotlib.colormaps["tab20" if len(classes) > 10 else "tab10"]
        wrong = ev.probabilities.argmax(1) != ev.y_true
        for c, name in enumerate(classes):
            m = ev.y_true == c
            if m.any():
                ax.scatter(xy[m, 0], xy[m, 1], s=22, color=cmap(c % cmap.N), label=name, alpha=0.85, edgecolor="none")
        if wrong.any():
            ax.scatter(xy[wrong, 0], xy[wrong, 1], s=90, facecolor="none", edgecolor="black", lw=1.3, label="misclassified")
        ax.set_xlabel(f"PC 1 ({explained[0]:.0%} of variance)")
        ax.set_ylabel(f"PC 2 ({explained[1]:.0%} of variance)")
        if len(classes) <= 20:
            ax.legend(fontsize=8, markerscale=1.2, loc="best")
    ax.set_title(f"Backbone features of the {ev.split} split, PCA")
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


def plot_samples(clf: Classifier, per_class: int = 6, max_classes: int = 12) -> Figure | None:
    """A few training images of each class."""
    root = clf._data_root(None)
    dataset = scan(root, 0.0, 0.0)
    pool = dataset.split("train")
    classes = dataset.classes[:max_classes]
    fig = NotebookFigure(figsize=(per_class * 1.6 + 1.5, len(classes) * 1.6 + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(classes), per_class))
    for r, name in enumerate(classes):
        label = dataset.classes.index(name)
        picks = [s.path for s in pool if s.label == label]
        picks = picks[:: max(1, len(picks) // per_class)][:per_class]
        for c in range(per_class):
            ax = axes[r, c]
            ax.axis("off")
            if c < len(picks) and (image := _thumbnail(picks[c], clf.preprocessing)) is not None:
                ax.imshow(image)
        axes[r, 0].set_title(_short(name, 22, 1), fontsize=9, loc="left")
    return fig


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PNG_DPI)
    return buf.getvalue()


# -- the report ---------------------------------------------------------------------------------
class Report:
    """The written report; displays inline in a notebook."""

    def __init__(self, path: Path, files: dict[str, Path]):
        self.path = path
        self.files = files

    def _repr_html_(self) -> str:
        return f'<iframe srcdoc="{html.escape(self.path.read_text("utf-8"))}" style="width:100%;height:800px;border:0"></iframe>'

    def __repr__(self) -> str:
        return f"Report({self.path})"


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def write_report(clf: Classifier, directory: str | Path, data: str | Path | None = None) -> Report:
    """Write the PNGs, per_class.csv and a self-contained report.html into `directory`."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    ev = collect(clf, data)
    info = clf.info
    figures = {
        "curves": plot_curves(info["history"], info.get("stages", {}).get("fine_tune", {}).get("history")) if info.get("history") else None,
        "confusion": plot_confusion(ev.metrics, f"Confusion matrix, {ev.split} split"),
        "calibration": plot_calibration(ev.y_true, ev.probabilities, ev.uncalibrated),
        "mistakes": plot_mistakes(ev, clf.classes, clf.preprocessing),
        "embedding": plot_embedding(ev, clf.classes),
        "dataset": plot_dataset(info["data"]["counts"]) if info.get("data") else None,
        "samples": plot_samples(clf) if info.get("data") and Path(info["data"]["root"]).is_dir() else None,
    }
    images: dict[str, bytes] = {}
    files: dict[str, Path] = {}
    for name, fig in figures.items():
        if fig is not None:
            images[name] = png_bytes(fig)
            files[name] = out / f"{name}.png"
            files[name].write_bytes(images[name])
    files["per_class"] = out / "per_class.csv"
    write_per_class_csv(ev.metrics, files["per_class"])

    def img(name: str, alt: str) -> str:
        if name not in images:
            return ""
        return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(images[name]).decode()}">'

    m = ev.metrics
    ece = expected_calibration_error(ev.y_true, ev.probabilities)
    top_k = ", ".join(f"top-{k} {v:.3f}" for k, v in m.top_k_accuracy.items() if k > 1)
    leakage = info.get("leakage", {})
    skipped = info.get("data", {}).get("skipped", [])
    calibration = info.get("calibration", {})
    history = info.get("history", {})
    sections = [
        f"<h1>headstart report</h1><p class=lead>{len(clf.classes)} classes · backbone <b>{html.escape(clf.spec.name)}</b> · "
        f"{html.escape(info.get('created', ''))}</p>"
        f"<div class=cards><div><span>{m.accuracy:.3f}</span>accuracy ({html.escape(ev.split)}, n = {m.count})</div>"
        f"<div><span>{m.macro_f1:.3f}</span>macro F1</div><div><span>{ece:.3f}</span>expected calibration error</div>"
        + (f"<div><span>{html.escape(top_k)}</span>top-k accuracy</div>" if top_k else "")
        + "</div>",
    ]
    if leakage.get("message"):
        sections.append(f"<p class=warn>⚠ {html.escape(leakage['message'])}</p>")
    sections.append("<h2>Evaluation</h2>" + _table(["class", "precision", "recall", "F1", "support"],
                    [[r["class"], _fmt(r["precision"]), _fmt(r["recall"]), _fmt(r["f1"]), r["support"]] for r in per_class_rows(m)])
                    + img("confusion", "confusion matrix"))
    sections.append("<h2>Mistakes</h2>" + img("mistakes", "most confident mistakes"))
    sections.append(
        "<h2>Calibration</h2><p>Expected calibration error (15 bins) on the evaluated split: "
        f"<b>{ece:.3f}</b>"
        + (f"; temperature scaling (T = {calibration['temperature']:.2f}, fitted on validation) changed it from "
           f"{calibration['ece_uncalibrated']:.3f}" if calibration.get("temperature", 1.0) != 1.0 else
           "; no temperature scaling (train with <code>--calibrate</code> to fit one)")
        + ".</p>" + img("calibration", "reliability diagram")
    )
    sections.append("<h2>Which classes overlap</h2>" + img("embedding", "feature embedding"))
    if history:
        sections.append(f"<h2>Training</h2><p>{len(history.get('val_loss', []))} epochs, best (restored) at epoch "
                        f"{history.get('best_epoch')}.</p>" + img("curves", "training curves"))
    if info.get("data"):
        d = info["data"]
        counts_rows = [[c] + [d["counts"][s].get(c, 0) for s in d["counts"]] for c in clf.classes]
        sections.append("<h2>Data</h2><p>" + html.escape(d["root"]) + "</p>" + _table(["class", *d["counts"]], counts_rows)
                        + img("dataset", "images per class") + img("samples", "sample images"))
        sections.append("<h3>Skipped files</h3>" + (_table(["file", "reason"], [[s["path"], s["reason"]] for s in skipped]) if skipped else "<p>none</p>"))
        near = leakage.get("cross_split", [])
        sections.append("<h3>Near-duplicates across splits</h3>" + (
            _table(["held-out image", "split", "most similar training image", "similarity"],
                   [[x["path"], x["split"], x["match"], f"{x['similarity']:.3f}"] for x in near[:50]]) if near else "<p>none found</p>"))
    sections.append("<h2>Configuration</h2>" + _table(["setting", "value"], [[k, json.dumps(v)] for k, v in clf.hparams.to_dict().items()]))
    if info.get("timings"):
        sections.append("<h3>Timings</h3>" + _table(["step", "value"], [[k, v] for k, v in info["timings"].items()]))
    from .classifier import environment

    sections.append("<h3>Environment</h3>" + _table(["", "version"], [[k, v] for k, v in environment().items()]))
    page = f"""<!doctype html><html lang=en><head><meta charset=utf-8><title>headstart report</title>
<style>body{{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
h2{{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}}img{{max-width:100%;display:block;margin:.8em 0}}
table{{border-collapse:collapse;margin:.6em 0}}td,th{{border:1px solid #ddd;padding:.25em .6em;text-align:left}}
th{{background:#f4f4f4}}.lead{{color:#555}}.cards{{display:flex;gap:1em;flex-wrap:wrap}}
.cards div{{border:1px solid #ddd;border-radius:8px;padding:.6em 1em;color:#555}}.cards span{{display:block;font-size:1.8em;color:#111}}
.warn{{background:#fff3cd;border:1px solid #e0c36a;padding:.6em 1em;border-radius:6px}}</style></head>
<body>{''.join(sections)}</body></html>"""
    files["report"] = out / "report.html"
    files["report"].write_text(page, "utf-8")
    return Report(files["report"], files)
