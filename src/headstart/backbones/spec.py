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
    """A builder of `module`.`name`(*args) (a module relative to this package, or absolute) that
    imports it, and torch, only when a network is built: predicting from cached ONNX graphs never
    needs either."""
    return partial(_build, module, name, *args)


def _build(module: str, name: str, *args) -> nn.Module:
    return getattr(importlib.import_module(module, __package__), name)(*args)


@dataclass(frozen=True)
class BackboneSpec:
    """One pretrained backbone, as the registry holds it (`headstart.backbones.register_backbone`).

    Attributes:
        name: what `--backbone` and model.json call it.
        description: one line for `headstart backbones` and the studio.
        build: makes the network (untrained): a module with `forward_features(x) -> (N,
            feature_dim)` and `blocks()`, the units fine-tuning unfreezes, bottom to top.
        weights: where its ImageNet weights come from, and their sha256.
        preprocessing: the input policy: crop size, resize, normalisation, interpolation.
        feature_dim: width of the pooled features.
        num_blocks: len(network.blocks()): what `--fine-tune N` counts from the top.
        parameters: millions of parameters; candidates are tried cheapest first.
    """

    name: str
    description: str
    build: Callable[[], nn.Module]
    weights: WeightsSource
    preprocessing: Preprocessing
    feature_dim: int
    num_blocks: int
    parameters: float = 0.0

    def weights_path(self, override: str | Path | None = None) -> Path:
        """The verified weights file: `override` (a user's copy) if given, else the installed one."""
        return resolve_weights(self.weights, self.name, override)

    def weights_installed(self) -> bool:
        """Whether the weights are installed and hash as they must."""
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

    def describe(self) -> dict:
        """What a page or a table shows about it (JSON-shaped)."""
        p = self.preprocessing
        return {
            "name": self.name,
            "description": self.description,
            "image_size": p.image_size,
            "feature_dim": self.feature_dim,
            "num_blocks": self.num_blocks,
            "installed": self.weights_installed(),
            "install": self.weights.install_hint,
        }
