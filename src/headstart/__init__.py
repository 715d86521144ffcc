"""headstart: a folder of images in, a small, fast, well-measured image classifier out.

import headstart
clf = headstart.train("data/")            # scan, extract cached features, train, evaluate
clf.predict("photo.jpg")[0].label
clf.save("models/flowers"); clf = headstart.load("models/flowers")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .version import __version__

# Attributes load on first use, so that `headstart --help` does not wait for torch.
_LAZY = {
    "Classifier": "classifier",
    "compare": "training.compare",
    "load": "classifier",
    "train": "classifier",
    "Evaluation": "evaluation.evaluation",
    "Event": "events",
    "EventBus": "events",
    "Cancelled": "events",
    "HeadstartError": "errors",
    "HParams": "hparams",
    "ExportedModel": "inference.exported",
    "Model": "inference.model",
    "Prediction": "inference.predictor",
    "Predictions": "inference.predictor",
    "Predictor": "inference.predictor",
    "TrainingRecord": "evaluation.record",
    "TrainingRun": "training.run",
    "RunOptions": "training.options",
    # the extension points: a backbone, an export format, a report figure (see headstart.registry)
    "register_backbone": "backbones",
    "register_export_format": "export",
    "register_figure": "evaluation.figures",
}

if TYPE_CHECKING:
    from .backbones import register_backbone
    from .classifier import Classifier, load, train
    from .errors import HeadstartError
    from .evaluation.evaluation import Evaluation
    from .evaluation.figures import register_figure
    from .evaluation.record import TrainingRecord
    from .events import Cancelled, Event, EventBus
    from .export import register_export_format
    from .hparams import HParams
    from .inference.exported import ExportedModel
    from .inference.model import Model
    from .inference.predictor import Prediction, Predictions, Predictor
    from .training.compare import compare
    from .training.options import RunOptions
    from .training.run import TrainingRun


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'headstart' has no attribute {name!r}")


__all__ = [
    "Cancelled",
    "Classifier",
    "Evaluation",
    "Event",
    "EventBus",
    "ExportedModel",
    "HParams",
    "HeadstartError",
    "Model",
    "Prediction",
    "Predictions",
    "Predictor",
    "RunOptions",
    "TrainingRecord",
    "TrainingRun",
    "__version__",
    "compare",
    "load",
    "register_backbone",
    "register_export_format",
    "register_figure",
    "train",
]
