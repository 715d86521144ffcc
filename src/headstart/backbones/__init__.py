"""Pretrained backbones: a registry of `BackboneSpec`s (weights, their hash, input policy, feature
width, fine-tunable blocks) that extraction, training, bundles, exports, the CLI and the studio read.

    specs/     one module per architecture family: its configuration and registered specs (no torch)
    networks/  the PyTorch networks those specs build, with state_dict keys matching their weights
    ensemble   feature ensembles ("a+b": members on one crop, features concatenated)

Add a backbone with `register_backbone(BackboneSpec(...))`, in a module of `specs/` for a built-in one.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from .ensemble import EnsembleSpec
from .registry import BACKBONES, DEFAULT_BACKBONE, get_backbone, register_backbone, weights_requirements
from .spec import BackboneSpec, architecture
from .weights import WeightsSource


@cache
def imagenet_classes() -> list[str]:
    """The 1000 ImageNet class names, in the pretrained classifiers' output order."""
    return resources.files(__package__).joinpath("imagenet_classes.txt").read_text("utf-8").splitlines()


__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "BackboneSpec",
    "EnsembleSpec",
    "WeightsSource",
    "architecture",
    "get_backbone",
    "imagenet_classes",
    "register_backbone",
    "weights_requirements",
]
