"""`Model`: what decides a trained classifier's predictions — backbone spec (and fine-tuned
weights, if any), head, labels, preprocessing, softmax temperature — and how it runs them.

A training run builds one, a bundle stores one, exports and evaluations take one;
`headstart.Classifier` wraps one with its training record.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..backbones import BackboneSpec
from ..preprocessing import Preprocessing
from .features import FeatureExtractor, feature_extractor
from .head import Head, softmax
from .predictor import PortableNetwork, Predictor

if TYPE_CHECKING:
    from torch import nn

    from .graph import ModelGraph


class Model(Predictor):
    """A runnable trained classifier.

    Args:
        spec: the backbone's registry entry.
        head: the trained head (features -> logits): a `Head`, or the torch module training built.
        classes: label names, in the head's output order.
        preprocessing: how pixels reach the backbone (defaults to the spec's).
        temperature: softmax temperature (temperature scaling); 1 means none.
        backbone: a fine-tuned backbone (module, or its numpy state dict); None runs the spec's
            pretrained one.
        weights: a user's copy of the pretrained weights file (runtime setting).
        engine: "auto", "onnxruntime" or "torch" for the backbone (runtime setting).
        tta: test-time augmentation: "flip" averages the features of each image and its mirror image.
        extractor: one already built for this very backbone and preprocessing, to reuse its sessions.
    """

    def __init__(
        self,
        spec: BackboneSpec,
        head: Head | nn.Sequential,
        classes: list[str],
        preprocessing: Preprocessing | None = None,
        temperature: float = 1.0,
        backbone: nn.Module | dict[str, np.ndarray] | None = None,
        weights: str | Path | None = None,
        engine: str = "auto",
        extractor: FeatureExtractor | None = None,
        tta: str = "none",
    ):
        self.spec = spec
        self.head = Head.of(head)
        self.classes = list(classes)
        self.preprocessing = preprocessing or spec.preprocessing
        self.temperature = float(temperature)
        self.tuned_backbone = backbone.eval() if hasattr(backbone, "eval") else backbone
        self.weights, self.engine, self.tta = weights, engine, tta
        self._extractor = extractor

    @property
    def extractor(self) -> FeatureExtractor:
        """Images -> features with this model's backbone (cached per recipe on disk)."""
        if self._extractor is None:
            self._extractor = feature_extractor(
                self.spec,
                self.weights,
                backbone=self.tuned_backbone,
                engine=self.engine,
                preprocessing=self.preprocessing,
                tta=self.tta,
            )
        return self._extractor

    def decision_function(self, features: np.ndarray) -> np.ndarray:
        """Head outputs before the softmax (N, classes) from backbone features (N, feature_dim)."""
        return self.head(features)

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) from backbone features (N, feature_dim)."""
        return softmax(self.decision_function(features), self.temperature)

    def predict_arrays(self, crops: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) for uint8 crops (N, H, W, 3)."""
        return self.predict_proba(self.extractor.embed(crops))

    def portable(self) -> PortableNetwork:
        """The backbone's ONNX file (mirror images run apart when the model flips), the head here."""

        def finish(features: np.ndarray, mirrored: np.ndarray | None) -> np.ndarray:
            return self.predict_proba(features if mirrored is None else (features + mirrored) / 2)

        return PortableNetwork(self.extractor.onnx_file("none"), self.tta == "flip", finish)

    def graph(self) -> ModelGraph:
        """The whole model as one network: uint8 crops in, probabilities out (what exports hold)."""
        from .graph import ModelGraph

        backbone, tta = self.extractor.backbone, self.tta
        return ModelGraph.classifier(backbone, self.head.module(), self.preprocessing, self.temperature, tta).eval()

    def parts(self) -> dict:
        """The constructor's arguments that rebuild this model."""
        return {
            "spec": self.spec,
            "head": self.head,
            "classes": self.classes,
            "preprocessing": self.preprocessing,
            "temperature": self.temperature,
            "backbone": self.tuned_backbone,
            "weights": self.weights,
            "engine": self.engine,
            "tta": self.tta,
        }

    def with_temperature(self, temperature: float) -> Model:
        """The same model at another softmax temperature (calibration)."""
        return Model(**self.parts() | {"temperature": temperature}, extractor=self.extractor)
