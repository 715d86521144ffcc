"""`Evaluation`: a model's predictions on labelled images, with their metrics and plots.

Training's held-out split, `Classifier.evaluate(folder)` and the report all build it the same way:
features (from the cache when known) -> probabilities -> metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.labelled import LabelledImages
from ..events import EventBus
from ..inference.head import softmax
from ..inference.model import Model
from ..preprocessing import Preprocessing
from .calibration import expected_calibration_error
from .metrics import Metrics, compute_metrics

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# The plots load matplotlib (~0.6 s) when first drawn, not when training merely measures a model.


@dataclass
class Evaluation:
    """A model's predictions on labelled images.

    Attributes:
        classes: the model's labels; `labels` index them.
        split: "test" / "val" (a training split or a pre-split folder's) or "all".
        root: the folder the images came from.
        paths: the images that could be read, in order.
        labels: true label index of each image.
        probabilities: predicted class probabilities (N, classes).
        features: backbone features (N, feature_dim), for the embedding plot.
        metrics: accuracy, per-class precision/recall/F1, confusion matrix, top-k.
        failures: images that could not be read, with the reason.
        uncalibrated: probabilities before temperature scaling, if the model has a temperature.
        preprocessing: how the model crops images (the mistakes plot shows what it saw).
        notes: images used although the decoder warned about them, with what it said.

    Example:
        >>> import numpy as np
        >>> ev = Evaluation.from_probabilities(["ant", "bee"], np.array([0, 1, 1]),
        ...                                    np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]]))
        >>> round(ev.metrics.accuracy, 3), ev.metrics.confusion
        (0.667, [[1, 0], [1, 1]])
    """

    classes: list[str]
    split: str
    root: Path | None
    paths: list[Path]
    labels: np.ndarray
    probabilities: np.ndarray
    features: np.ndarray
    metrics: Metrics
    failures: dict[Path, str] = field(default_factory=dict)
    uncalibrated: np.ndarray | None = None
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    notes: dict[Path, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, model: Model, images: LabelledImages, events: EventBus | None = None, use_cache: bool = True
    ) -> Evaluation:
        """Run `model` on `images` (features from the cache where it has them)."""
        extraction = model.extractor.extract(
            images.paths, use_cache=use_cache, events=events, stage="evaluate", description="Evaluating"
        )
        kept = [images.paths[i] for i in extraction.ok]
        evaluation = cls.from_features(
            model,
            kept,
            images.labels[extraction.ok],
            extraction.features,
            images.split,
            images.root,
            images.skipped | extraction.failures,
        )
        evaluation.notes = extraction.notes
        return evaluation

    @classmethod
    def from_features(
        cls,
        model: Model,
        paths: list[Path],
        labels: np.ndarray,
        features: np.ndarray,
        split: str,
        root: Path | None = None,
        failures: dict[Path, str] | None = None,
    ) -> Evaluation:
        """From backbone features already computed (training keeps them)."""
        logits = model.decision_function(features)
        uncalibrated = softmax(logits) if model.temperature != 1.0 else None
        evaluation = cls.from_probabilities(
            model.classes,
            labels,
            softmax(logits, model.temperature),
            split,
            root,
            paths,
            features,
            failures,
            uncalibrated,
        )
        evaluation.preprocessing = model.preprocessing
        return evaluation

    @classmethod
    def from_probabilities(
        cls,
        classes: list[str],
        labels: np.ndarray,
        probabilities: np.ndarray,
        split: str = "all",
        root: Path | None = None,
        paths: list[Path] | None = None,
        features: np.ndarray | None = None,
        failures: dict[Path, str] | None = None,
        uncalibrated: np.ndarray | None = None,
    ) -> Evaluation:
        """From class probabilities already computed (no model needed)."""
        labels = np.asarray(labels, dtype=np.int64)
        return cls(
            list(classes),
            split,
            root,
            list(paths or []),
            labels,
            probabilities,
            features if features is not None else np.zeros((len(labels), 0), np.float32),
            compute_metrics(labels, probabilities, classes),
            dict(failures or {}),
            uncalibrated,
        )

    @property
    def expected_calibration_error(self) -> float:
        """Expected calibration error of the probabilities (15 bins)."""
        return expected_calibration_error(self.labels, self.probabilities)

    def per_class_rows(self) -> list[dict]:
        """Per class, macro and weighted averages, top-k accuracy (sklearn's report layout)."""
        return self.metrics.per_class_rows()

    def plot_confusion(self) -> Figure:
        """Counts and row-normalised percentages."""
        from . import plots

        return plots.plot_confusion(self.metrics, f"Confusion matrix, {self.split} split")

    def plot_calibration(self) -> Figure:
        """Reliability diagram, before and after temperature scaling."""
        from . import plots

        return plots.plot_calibration(self.labels, self.probabilities, self.uncalibrated)

    def plot_mistakes(self) -> Figure:
        """The most confident mistakes and least confident right answers, as the model saw them."""
        from . import plots

        return plots.plot_mistakes(
            self.paths, self.labels, self.probabilities, self.classes, self.preprocessing, self.split
        )

    def plot_embedding(self) -> Figure:
        """PCA of the backbone features, coloured by class, mistakes circled."""
        from . import plots

        return plots.plot_embedding(self.features, self.labels, self.probabilities, self.classes, self.split)
