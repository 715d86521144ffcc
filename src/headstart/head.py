"""The new classification head on top of the frozen features."""

from __future__ import annotations

from torch import nn


def build_head(in_features: int, num_classes: int, hidden: tuple[int, ...] = (), dropout: float = 0.2) -> nn.Sequential:
    """Dropout + Linear (the reference recipe), optionally with dense+ReLU layers before it."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Dropout(dropout), nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)
