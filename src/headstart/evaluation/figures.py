"""The report's figures, declared once each: their file name, the section of report.html they sit
in, and what they show (which keys the cached PNG). The report, its file list (what headstart may
overwrite, and what a bundle folder holds of headstart's), and the studio's plots all read
`REPORT_FIGURES`; `register_figure` adds one from anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import TYPE_CHECKING

from ..data.dataset import scan
from ..data.labelled import sample_images
from ..errors import HeadstartError
from ..registry import Registry
from .figure_cache import FigureSpec, file_stamps

if TYPE_CHECKING:
    from .evaluation import Evaluation
    from .record import TrainingRecord

REPORT_PAGE, PER_CLASS_CSV = "report.html", "per_class.csv"


@dataclass(frozen=True)
class ReportFigure:
    """One figure of the report.

    Attributes:
        name: its file is `<name>.png`, beside report.html.
        section: the heading of the report.html section it appears in (a heading no built-in section
            has gets a section of its own, after the built-in ones).
        alt: the image's text alternative.
        prepare: (evaluation, record) -> what to draw: a `FigureSpec` whose `inputs` are exactly
            what the figure shows (its cache key) and whose `build()` draws it; None when the model
            has nothing to show there (no curves for a hand-made model, no training folder).
    """

    name: str
    section: str
    alt: str
    prepare: Callable[[Evaluation, TrainingRecord], FigureSpec | None]

    def spec(self, evaluation: Evaluation, record: TrainingRecord) -> FigureSpec | None:
        """What to draw for this model, named after this figure."""
        spec = self.prepare(evaluation, record)
        return None if spec is None else FigureSpec(self.name, spec.inputs, spec.build)


REPORT_FIGURES: Registry[ReportFigure] = Registry("report figure")


def register_figure(figure: ReportFigure, *, replace: bool = False) -> ReportFigure:
    """Add a figure to every report (its PNG, its place in report.html) and to the studio's plots."""
    if figure.name in ("report", "per_class"):
        raise HeadstartError(f"{figure.name!r}: a report file of that name exists already")
    return REPORT_FIGURES.register(figure, replace=replace)


def report_files() -> tuple[str, ...]:
    """Every file a report writes: headstart's own, which it may replace (and no other)."""
    return (REPORT_PAGE, PER_CLASS_CSV, *(f"{name}.png" for name in REPORT_FIGURES))


def plots():
    """The plotting module, imported (with matplotlib, 0.4 s) only when a figure is drawn."""
    from . import plots

    return plots


# -- the built-in figures, in the order the report shows them ------------------------------------
def _curves(ev: Evaluation, record: TrainingRecord) -> FigureSpec | None:
    if not record.history.val_loss:
        return None
    history, tuned = record.history.to_dict(), record.fine_tune.to_dict() if record.fine_tune else None
    shown = [{k: v for k, v in h.items() if not k.endswith("seconds")} if h else h for h in (history, tuned)]
    return FigureSpec("curves", shown, lambda: plots().plot_curves(history, tuned))


def _mistakes(ev: Evaluation, record: TrainingRecord) -> FigureSpec:
    stamps = file_stamps(ev.paths)  # the images it shows, as they are now
    crop = ev.preprocessing.fingerprint
    inputs = None if stamps is None else [stamps, ev.labels, ev.probabilities, ev.classes, crop, ev.split]
    return FigureSpec("mistakes", inputs, ev.plot_mistakes)


def _dataset(ev: Evaluation, record: TrainingRecord) -> FigureSpec | None:
    if not record.data:
        return None
    return FigureSpec("dataset", record.data.counts, lambda: plots().plot_dataset(record.data.counts))


def _samples(ev: Evaluation, record: TrainingRecord) -> FigureSpec | None:
    """A few training images of each class, when the training folder is still there."""
    try:
        root = record.data.located() if record.data else None
    except HeadstartError:
        return None
    if root is None:
        return None
    # model.json's picks (a model.json from before them: picked again), only inside the folder
    picks = record.data.samples or sample_images(scan(root, 0.0, 0.0))
    inside = lambda rel: not PurePosixPath(rel).is_absolute() and ".." not in PurePosixPath(rel).parts  # noqa: E731
    images = {name: [root / rel for rel in paths if inside(rel)] for name, paths in picks.items()}
    stamps = file_stamps([path for paths in images.values() for path in paths])
    inputs = None if stamps is None else [stamps, list(images), ev.preprocessing.fingerprint]
    return FigureSpec("samples", inputs, lambda: plots().plot_samples(images, ev.preprocessing))


for _figure in (
    ReportFigure(
        "confusion",
        "Evaluation",
        "confusion matrix",
        lambda ev, record: FigureSpec("confusion", [ev.metrics.confusion, ev.classes, ev.split], ev.plot_confusion),
    ),
    ReportFigure("mistakes", "Mistakes", "most confident mistakes", _mistakes),
    ReportFigure(
        "calibration",
        "Calibration",
        "reliability diagram",
        lambda ev, record: FigureSpec(
            "calibration", [ev.labels, ev.probabilities, ev.uncalibrated], ev.plot_calibration
        ),
    ),
    ReportFigure(
        "embedding",
        "Which classes overlap",
        "feature embedding",
        lambda ev, record: FigureSpec(
            "embedding", [ev.features, ev.labels, ev.probabilities, ev.classes, ev.split], ev.plot_embedding
        ),
    ),
    ReportFigure("curves", "Training", "training curves", _curves),
    ReportFigure("dataset", "Data", "images per class", _dataset),
    ReportFigure("samples", "Data", "sample images", _samples),
):
    register_figure(_figure)
