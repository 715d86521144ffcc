"""headstart: a folder of images in, a small, fast, well-measured image classifier out.

    import headstart
    clf = headstart.train("data/")            # scan, extract cached features, train, evaluate
    clf.predict("photo.jpg")[0].label
    clf.save("models/flowers"); clf = headstart.load("models/flowers")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# Attributes load on first use, so that `headstart --help` does not wait for torch.
_LAZY = {
    "Classifier": "classifier", "Evaluation": "classifier", "Prediction": "classifier", "Predictions": "classifier",
    "HeadstartError": "errors", "HParams": "hparams",
}

if TYPE_CHECKING:
    from .classifier import Classifier, Evaluation, Prediction, Predictions
    from .errors import HeadstartError
    from .hparams import HParams


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name in ("train", "load"):
        return getattr(importlib.import_module(".classifier", __name__).Classifier, name)
    raise AttributeError(f"module 'headstart' has no attribute {name!r}")


__all__ = ["Classifier", "Evaluation", "HParams", "HeadstartError", "Prediction", "Predictions", "load", "train", "__version__"]
