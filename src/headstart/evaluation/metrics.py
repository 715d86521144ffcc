"""Accuracy, per-class precision/recall/F1 and the confusion matrix of a set of predictions."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class Metrics:
    """How well predictions match the truth, overall and per class (as model.json stores it)."""

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
        """The unweighted mean of the per-class F1."""
        return float(np.mean(self.f1))

    def to_dict(self) -> dict:
        """model.json's form."""
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

    def per_class_rows(self) -> list[dict]:
        """Per class, then macro and weighted averages, then top-k accuracy (sklearn's report
        layout: accuracy rows carry their value in the f1 column)."""
        rows = [
            {"class": c, "precision": p, "recall": r, "f1": f, "support": s}
            for c, p, r, f, s in zip(self.classes, self.precision, self.recall, self.f1, self.support)
        ]
        support = np.array(self.support, dtype=np.float64)
        weights = support / support.sum() if support.sum() else support
        for name, w in (("macro avg", np.full(len(rows), 1 / max(len(rows), 1))), ("weighted avg", weights)):
            averages = {
                k: float(np.dot(w, [r[k] for r in rows[: len(self.classes)]])) for k in ("precision", "recall", "f1")
            }
            rows.append({"class": name, **averages, "support": int(support.sum())})
        for k, acc in self.top_k_accuracy.items():
            name = "accuracy" if k == 1 else f"top-{k} accuracy"
            rows.append({"class": name, "precision": "", "recall": "", "f1": acc, "support": self.count})
        return rows

    @classmethod
    def from_dict(cls, d: dict, classes: list[str] | None = None) -> Metrics:
        """The inverse of `to_dict`; `classes` fixes the order (default: as stored)."""
        classes = list(classes if classes is not None else d["per_class"])
        per_class = [d["per_class"][c] for c in classes]
        return cls(
            classes=classes,
            accuracy=d["accuracy"],
            precision=[c["precision"] for c in per_class],
            recall=[c["recall"] for c in per_class],
            f1=[c["f1"] for c in per_class],
            support=[c["support"] for c in per_class],
            confusion=d["confusion"],
            top_k_accuracy={int(k): v for k, v in d["top_k_accuracy"].items()},
            count=d["count"],
        )


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    return np.bincount(num_classes * y_true + y_pred, minlength=num_classes**2).reshape(num_classes, num_classes)


def compute_metrics(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> Metrics:
    """Accuracy, per-class precision, recall and F1, confusion matrix and top-k accuracy."""
    # Plain numpy rather than sklearn.metrics, whose import alone costs ~1 s per command here;
    # the tests check these numbers against scikit-learn.
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = probabilities.argmax(1) if len(probabilities) else np.zeros(0, np.int64)
    cm = confusion_matrix(y_true, y_pred, len(classes))
    tp, s = np.diag(cm).astype(np.float64), cm.sum(1)
    predicted = cm.sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(predicted > 0, tp / predicted, 0.0)
        r = np.where(s > 0, tp / s, 0.0)
        f = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
    ranked = np.argsort(-probabilities, axis=1) if len(probabilities) else np.zeros((0, len(classes)), int)
    top_k = {
        k: float(np.mean([t in row[:k] for t, row in zip(y_true, ranked)])) if len(y_true) else 0.0
        for k in (1, 3, 5)
        if k == 1 or k < len(classes)  # top-k with k >= classes is trivially 1
    }
    return Metrics(
        classes=list(classes),
        accuracy=float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        precision=[float(v) for v in p],
        recall=[float(v) for v in r],
        f1=[float(v) for v in f],
        support=[int(v) for v in s],
        confusion=cm.tolist(),
        top_k_accuracy=top_k,
        count=int(len(y_true)),
    )


def wilson(correct: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion: sensible at 0%, 100% and small n, unlike p ± z·se."""
    if n == 0:
        return 0.0, 1.0
    p = correct / n
    centre, spread = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    low, high = (centre - spread) / (1 + z * z / n), (centre + spread) / (1 + z * z / n)
    return max(0.0, min(low, p)), min(1.0, max(high, p))  # rounding must not put p outside
