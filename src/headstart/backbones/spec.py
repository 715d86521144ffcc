"""`BackboneSpec`: everything headstart needs to know about one pretrained architecture."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import HeadstartError
from ..preprocessing import Preprocessing
from .weights import WeightsSource, load_state_dict, resolve_weights

if TYPE_CHECKING:
    from torch import nn


def architecture(module: str, name: str, *args) -> Callable[[], nn.Module]:
    """A builder of `module`.`name`(*args) that imports it (and torch) only when a network is
    built: predicting from cached ONNX graphs never needs either."""
    return partial(_build, module, name, *args)


def _build(module: str, name: str, *args) -> nn.Module:
    return getattr(importlib.import_module(module, __package__), name)(*args)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    description: str
    build: Callable[[], nn.Module]  # the module has forward_features(x) -> (N, feature_dim) and blocks()
    weights: WeightsSource
    preprocessing: Preprocessing
    feature_dim: int
    num_blocks: int  # len(module.blocks()): the units `--fine-tune N` counts from the top

    def weights_path(self, override: str | Path | None = None) -> Path:
        return resolve_weights(self.weights, self.name, override)

    def weights_installed(self) -> bool:
        path = self.weights.installed_path()
        if path is None:
            return False
        try:
            resolve_weights(self.weights, self.name, path)
        except HeadstartError:
            return False
        return True

    def create(self, weights: str | Path | None = None, pretrained: bool = True) -> nn.Module:
        """The ImageNet-pretrained network in eval mode."""
        model = self.build()
        if pretrained:
            model.load_state_dict(load_state_dict(self.weights_path(weights)))
        return model.eval()
