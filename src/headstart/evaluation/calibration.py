"""Is a predicted 90% right 90% of the time? Expected calibration error and temperature scaling."""

from __future__ import annotations

import numpy as np

from ..inference.head import softmax

BINS = 15


def reliability(y_true: np.ndarray, probabilities: np.ndarray, bins: int = BINS) -> dict[str, np.ndarray]:
    """Per confidence bin: mean confidence, accuracy and count (top-1 prediction)."""
    confidence = probabilities.max(1)
    correct = (probabilities.argmax(1) == y_true).astype(np.float64)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore"):
        return {
            "edges": np.linspace(0, 1, bins + 1),
            "confidence": np.bincount(index, confidence, bins) / count,
            "accuracy": np.bincount(index, correct, bins) / count,
            "count": count,
        }


def expected_calibration_error(y_true: np.ndarray, probabilities: np.ndarray, bins: int = BINS) -> float:
    """Count-weighted mean |accuracy - confidence| over confidence bins (Guo et al., 2017)."""
    if len(y_true) == 0:
        return 0.0
    r = reliability(y_true, probabilities, bins)
    filled = r["count"] > 0
    gaps = np.abs(r["accuracy"][filled] - r["confidence"][filled])
    return float(np.sum(gaps * r["count"][filled]) / len(y_true))


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature T minimising validation NLL of softmax(logits / T); 1 means no change."""
    from scipy.optimize import minimize_scalar

    def nll(log_t: float) -> float:
        p = softmax(logits, float(np.exp(log_t)))
        return float(-np.mean(np.log(p[np.arange(len(y_true)), y_true] + 1e-12)))

    result = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(result.x))
