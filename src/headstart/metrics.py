"""Accuracy, per-class precision/recall/F1 and the confusion matrix of a set of predictions."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support


@dataclass
class Metrics:
    classes: list[str]
    accuracy: float
    precision: list[float]
    recall: list[float]
    f1: list[float]
    support: list[int]
    confusion: list[list[int]]  # rows: true class, columns: predicted class
    top_k_accuracy: dict[int, float]
    count: int

    @property
    def macro_f1(self) -> float:
        return float(np.mean(self.f1))

    def to_dict(self) -> dict:
        return {
            "count": self.count,
            "accuracy": self.accuracy,
            "macro_f1": self.macro_f1,
            "top_k_accuracy": {str(k): v for k, v in self.top_k_accuracy.items()},
            "per_class": {
                name: {"precision": p, "recall": r, "f1": f, "support": s}
                for name, p, r, f, s in zip(self.classes, self.precision, self.recall, self.f1, self.support)
            },
            "confusion": self.confusion,
        }


def compute_metrics(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> Metrics:
    y_true = np.asarray(y_true)
    y_pred = probabilities.argmax(1) if len(probabilities) else np.zeros(0, int)
    labels = list(range(len(classes)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    ranked = np.argsort(-probabilities, axis=1) if len(probabilities) else np.zeros((0, len(classes)), int)
    top_k = {
        k: float(np.mean([t in row[:k] for t, row in zip(y_true, ranked)])) if len(y_true) else 0.0
        for k in sorted({1, min(3, len(classes)), min(5, len(classes))})
    }
    return Metrics(
        classes=list(classes),
        accuracy=float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        precision=[float(v) for v in p],
        recall=[float(v) for v in r],
        f1=[float(v) for v in f],
        support=[int(v) for v in s],
        confusion=confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        top_k_accuracy=top_k,
        count=int(len(y_true)),
    )
