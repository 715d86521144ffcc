"""The JSON shape of a prediction, one for both apps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel


class LabelProbability(BaseModel):
    """One label and its probability."""

    label: str
    probability: float


class ImagePrediction(BaseModel):
    """The model's answer for one image: the label, its probability, the top ones, all of them."""

    name: str
    label: str
    probability: float
    top: list[LabelProbability]
    probabilities: dict[str, float]

    @classmethod
    def of(cls, name: str, classes: Sequence[str], row: np.ndarray, top_k: int = 3) -> ImagePrediction:
        """From a row of class probabilities (ties keep the classes' order)."""
        order = np.argsort(-row, kind="stable")
        return cls(
            name=name,
            label=classes[order[0]],
            probability=float(row[order[0]]),
            top=[LabelProbability(label=classes[i], probability=float(row[i])) for i in order[:top_k]],
            probabilities={c: float(p) for c, p in zip(classes, row)},
        )
