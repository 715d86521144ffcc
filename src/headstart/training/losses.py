"""The head's training loss in numpy: class weights and the softmax regression objective."""

from __future__ import annotations

import numpy as np

from .lbfgs import minimize_lbfgs


def class_weights(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Inverse-frequency weights normalised to mean 1 (sklearn's 'balanced'), float32."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    return (len(labels) / (num_classes * np.maximum(counts, 1))).astype(np.float32)


class SoftmaxRegression:
    """Weighted, label-smoothed cross-entropy of a linear softmax layer on fixed features, as
    torch's `CrossEntropyLoss(weight, label_smoothing)` defines it; parameters are one flat
    float32 vector, the (classes, features) weight matrix then the biases."""

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        num_classes: int,
        class_weights: np.ndarray | None = None,
        smoothing: float = 0.0,
    ):
        self.x, self.y, self.num_classes = np.ascontiguousarray(x, np.float32), np.asarray(y), num_classes
        targets = np.full((len(y), num_classes), smoothing / num_classes, np.float32)
        targets[np.arange(len(y)), self.y] += 1 - smoothing
        weights = np.ones(num_classes, np.float32) if class_weights is None else class_weights.astype(np.float32)
        # Each row's share of the mean: the loss is sum(targets * -log p), its gradient p * mass - targets.
        self.targets = targets * weights / weights[self.y].sum()
        self.mass = self.targets.sum(1, keepdims=True)

    @property
    def size(self) -> int:
        """Parameters: one weight per feature and class, plus a bias per class."""
        return (self.x.shape[1] + 1) * self.num_classes

    def split(self, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """theta -> (weights (classes, features), biases)."""
        d = self.x.shape[1]
        return theta[: self.num_classes * d].reshape(self.num_classes, d), theta[self.num_classes * d :]

    def _log_probabilities(self, theta: np.ndarray) -> np.ndarray:
        w, b = self.split(theta)
        z = self.x @ w.T + b
        z -= z.max(1, keepdims=True)
        return z - np.log(np.exp(z).sum(1, keepdims=True))

    def loss(self, theta: np.ndarray) -> float:
        """The (smoothed, class-weighted) cross-entropy at theta."""
        return float(-(self.targets * self._log_probabilities(theta)).sum())

    def accuracy(self, theta: np.ndarray) -> float:
        """Share of examples whose most probable class is theirs."""
        return float((self._log_probabilities(theta).argmax(1) == self.y).mean())

    def objective(self, l2: float):
        """theta -> (loss + l2 / 2 |W|^2, gradient), for `minimize_lbfgs`."""

        def value_and_gradient(theta: np.ndarray) -> tuple[float, np.ndarray]:
            w, _ = self.split(theta)
            log_p = self._log_probabilities(theta)
            g = np.exp(log_p) * self.mass - self.targets  # d loss / d logits
            grad_w = g.T @ self.x + np.float32(l2) * w
            value = -(self.targets * log_p).sum() + 0.5 * l2 * float((w * w).sum())
            return float(value), np.concatenate([grad_w.ravel(), g.sum(0)])

        return value_and_gradient

    def fit(self, l2: float, start: np.ndarray | None = None) -> np.ndarray:
        """theta minimising the loss plus l2 / 2 |W|^2, from `start` (default zero)."""
        start = np.zeros(self.size, np.float32) if start is None else start
        return minimize_lbfgs(self.objective(l2), start).x
