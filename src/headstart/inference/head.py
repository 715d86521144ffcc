"""The trained head as numpy arrays: what bundles store and what predicting runs, without torch.

Training builds the head in PyTorch (`graph.build_head`: dropout + dense layers, ReLU between);
at inference dropout is the identity, so the head is a few matrix products that numpy does in
microseconds, while importing torch alone takes 1.7 s and 220 MB here.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .runtime import numpy_state


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Class probabilities from logits (N, classes), at softmax temperature `temperature`."""
    z = logits / temperature
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


class Head:
    """Dense layers (ReLU between them) from backbone features to logits.

    Args:
        weights: one (out, in) float32 matrix per layer, first to last.
        biases: one (out,) vector per layer.
        dropout: the training dropout before each layer (kept to rebuild the same network).

    Example:
        >>> head = Head([np.eye(2, 3, dtype=np.float32)], [np.array([0.0, 1.0], np.float32)])
        >>> head(np.array([[1.0, 2.0, 3.0]], np.float32)).tolist(), head.layout
        ([[1.0, 3.0]], {'hidden': [], 'dropout': 0.0})
    """

    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray], dropout: float = 0.0):
        self.weights = [np.ascontiguousarray(w, np.float32) for w in weights]
        self.biases = [np.ascontiguousarray(b, np.float32) for b in biases]
        self.dropout = float(dropout)

    @classmethod
    def of(cls, head) -> Head:
        """A `Head` as is, or the numpy copy of a `graph.build_head` torch module."""
        if isinstance(head, Head):
            return head
        dropout = next((float(m.p) for m in head if type(m).__name__ == "Dropout"), 0.0)
        state = numpy_state(head)
        widths = [state[k].shape[0] for k in state if k.endswith(".weight")]
        return cls.from_state(state, widths[:-1], dropout, state[next(iter(state))].shape[1], widths[-1])

    @classmethod
    def from_state(
        cls, state: Mapping[str, np.ndarray], hidden, dropout: float, in_features: int, num_classes: int
    ) -> Head:
        """From `build_head`'s state dict; ValueError unless its names and shapes are exactly those
        of a head with these `hidden` widths between `in_features` and `num_classes`."""
        widths = [in_features, *hidden, num_classes]
        expected = {}
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
            expected[f"{3 * i + 1}.weight"], expected[f"{3 * i + 1}.bias"] = (n_out, n_in), (n_out,)
        if {k: tuple(v.shape) for k, v in state.items()} != expected:
            raise ValueError("head tensors do not match the recorded layout")
        layers = range(len(widths) - 1)
        return cls(
            [state[f"{3 * i + 1}.weight"] for i in layers], [state[f"{3 * i + 1}.bias"] for i in layers], dropout
        )

    @property
    def layout(self) -> dict:
        """The `build_head` arguments besides the input and output widths: hidden widths and dropout."""
        return {"hidden": [w.shape[0] for w in self.weights[:-1]], "dropout": self.dropout}

    @property
    def num_parameters(self) -> int:
        """Weights and biases, counted."""
        return sum(w.size + b.size for w, b in zip(self.weights, self.biases))

    def state_dict(self) -> dict[str, np.ndarray]:
        """The tensors under `build_head`'s names ("1.weight", ...)."""
        state = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            state[f"{3 * i + 1}.weight"], state[f"{3 * i + 1}.bias"] = w, b
        return state

    def __call__(self, features: np.ndarray) -> np.ndarray:
        """Logits (N, classes) for features (N, in_features)."""
        x = np.asarray(features, np.float32)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            x = x @ w.T + b
            if i < len(self.weights) - 1:
                x = np.maximum(x, 0)
        return x

    def module(self):
        """The same head as a torch module (eval mode), for exports and fine-tuning."""
        import torch

        from .graph import build_head

        module = build_head(
            self.weights[0].shape[1], self.weights[-1].shape[0], tuple(self.layout["hidden"]), self.dropout
        )
        module.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in self.state_dict().items()})
        return module.eval()
