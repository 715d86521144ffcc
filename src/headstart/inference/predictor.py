"""One interface for everything that labels images — a trained bundle, an exported ONNX file —
and the predictions it returns."""

from __future__ import annotations

import base64
import csv
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from ..data.images import collect_images
from ..display import is_utf8, printable, spreadsheet_cell
from ..errors import HeadstartError
from ..events import EventBus, Subscriber, as_bus
from ..preprocessing import Preprocessing
from .pipeline import batched_inference

PathLike = str | Path


@dataclass
class Prediction:
    """The model's answer for one image."""

    path: Path
    label: str
    probability: float
    probabilities: dict[str, float]

    def top(self, k: int) -> list[tuple[str, float]]:
        """The `k` most probable labels with their probabilities, most probable first."""
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]


@dataclass
class Predictions:
    """Predictions in input order, plus the inputs that could not be read, with reasons.

    Iterate over it, index it, or take `labels`; `failures` maps each unreadable path to why.

    Example:
        >>> p = Predictions.from_probabilities(["cat", "dog"], [Path("a.jpg"), Path("b.jpg")], [1],
        ...                                    np.array([[0.2, 0.8]]), {Path("a.jpg"): "empty file (0 bytes)"})
        >>> p.labels, p[0].probability, list(p.failures.values())
        (['dog'], 0.8, ['empty file (0 bytes)'])

    Attributes:
        classes: the predictor's labels.
        items: one `Prediction` per readable image.
        failures: unreadable inputs and why.
        notes: inputs labelled although the decoder warned about them (a corrupt EXIF block), and what it said.
    """

    classes: list[str]
    items: list[Prediction]
    failures: dict[Path, str] = field(default_factory=dict)
    notes: dict[Path, str] = field(default_factory=dict)

    def __iter__(self) -> Iterator[Prediction]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Prediction:
        return self.items[i]

    @property
    def labels(self) -> list[str]:
        """The predicted label of each readable image, in order."""
        return [p.label for p in self.items]

    def write_csv(self, file: TextIO, header: bool = True) -> None:
        """path, label, probability and one column per class. Text cells are spreadsheet-safe (a
        file named "=cmd|..." is shown, not run as a formula). A non-UTF-8 file name keeps its
        original bytes wherever `file` can carry them (surrogateescape, as a C.UTF-8 stdout or
        `PredictionFile`) or a str buffer; any other stream gets them as \\xNN instead of failing."""
        text = str if getattr(file, "errors", None) in (None, "surrogateescape") else printable
        writer = csv.writer(file, lineterminator="\n")
        if header:
            writer.writerow(["path", "label", "probability", *(spreadsheet_cell(text(c)) for c in self.classes)])
        for p in self.items:
            probabilities = (f"{p.probabilities[c]:.6f}" for c in self.classes)
            writer.writerow(
                [
                    spreadsheet_cell(text(str(p.path))),
                    spreadsheet_cell(text(p.label)),
                    f"{p.probability:.6f}",
                    *probabilities,
                ]
            )

    def write_jsonl(self, file: TextIO, top_k: int = 3) -> None:
        """One JSON object per image. JSON is UTF-8, so a file name that is not is written with its
        undecodable bytes as \\udcXX escapes (Python's json and os.fsencode read them back into the
        same path), and that row also carries `path_bytes`: the name's exact bytes, base64."""
        for p in self.items:
            row = {
                "path": str(p.path),
                "label": p.label,
                "probability": p.probability,
                "top": p.top(top_k),
                "probabilities": p.probabilities,
            }
            if not is_utf8(row["path"]):
                row["path_bytes"] = base64.b64encode(os.fsencode(p.path)).decode("ascii")
            file.write(json.dumps(row) + "\n")

    @classmethod
    def joined(cls, classes: list[str], chunks: Iterable[Predictions]) -> Predictions:
        """Chunks (from a streaming predictor) as one, in order."""
        items: list[Prediction] = []
        failures: dict[Path, str] = {}
        notes: dict[Path, str] = {}
        for chunk in chunks:
            items += chunk.items
            failures |= chunk.failures
            notes |= chunk.notes
        return cls(list(classes), items, failures, notes)

    @classmethod
    def from_probabilities(
        cls,
        classes: list[str],
        paths: list[Path],
        ok: list[int],
        probabilities: np.ndarray,
        failures: dict[Path, str],
        notes: dict[Path, str] | None = None,
    ) -> Predictions:
        """One Prediction per readable image (`ok` indexes `paths`; rows of `probabilities` follow it)."""
        items = []
        for i, p in zip(ok, probabilities):
            best = int(p.argmax())
            items.append(Prediction(paths[i], classes[best], float(p[best]), dict(zip(classes, map(float, p)))))
        return cls(list(classes), items, failures, dict(notes or {}))


@dataclass
class PortableNetwork:
    """How a predictor runs on other machines (Ray workers): an ONNX file taking uint8 crops,
    whether mirror images go through it too, and how its outputs (and the mirror images', or
    None) become probabilities, here."""

    onnx: Path
    mirror: bool
    finish: Callable[[np.ndarray, np.ndarray | None], np.ndarray]


class Predictor(ABC):
    """Anything that labels images: `headstart.load` returns one for a bundle or an exported file.

    Implementations give `classes`, `preprocessing` and `predict_arrays`; `predict` (files,
    folders, globs) is shared, so every predictor decodes and crops images the same way.

    Attributes:
        classes: the labels, in the order of the probability columns.
        preprocessing: how images are resized and cropped before they reach the model.

    Example:
        >>> from PIL import Image
        >>> predictor = headstart.train(ants_bees)          # a Classifier is a Predictor
        >>> crops = np.stack([predictor.preprocessing(Image.open(p).convert("RGB"))
        ...                   for p in sorted((ants_bees / "val" / "ants").iterdir())[:2]])
        >>> crops.shape, predictor.predict_arrays(crops).shape
        ((2, 224, 224, 3), (2, 2))
        >>> predictor.predict(ants_bees / "val" / "ants").labels.count("ants") >= 4
        True
    """

    classes: list[str]
    preprocessing: Preprocessing

    def portable(self) -> PortableNetwork:
        """This predictor as a `PortableNetwork` (what `--engine ray` runs)."""
        raise HeadstartError(f"{type(self).__name__} can't run on other machines")

    @abstractmethod
    def predict_arrays(self, crops: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) for uint8 RGB crops (N, H, W, 3), already resized and
        centre-cropped as `preprocessing` says."""

    def predict(
        self, inputs: PathLike | Iterable[PathLike], on_event: EventBus | Subscriber | None = None
    ) -> Predictions:
        """Label image files, folders (searched recursively) or glob patterns.

        Args:
            inputs: one path or pattern, or several.
            on_event: a subscriber (or bus) receiving the "predict" stage's progress events.

        Returns:
            Predictions in input order; unreadable inputs are in `failures` with the reason.
        """
        paths, failures = collect_images([inputs] if isinstance(inputs, (str, Path)) else inputs)
        result = batched_inference(
            paths,
            self.preprocessing,
            self.predict_arrays,
            len(self.classes),
            events=as_bus(on_event),
            stage="predict",
            description="Predicting",
        )
        return Predictions.from_probabilities(
            self.classes, paths, result.ok, result.outputs, failures | result.failures, result.notes
        )
