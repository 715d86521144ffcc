"""The network of a feature ensemble (see `ensemble.EnsembleSpec`): members side by side on one crop."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...preprocessing import Preprocessing
from ..spec import BackboneSpec


class Member(nn.Module):
    """One backbone of an ensemble: [0, 1] crop -> its own size and normalisation -> pooled features."""

    def __init__(self, network: nn.Module, preprocessing: Preprocessing, input_size: int):
        super().__init__()
        self.network = network
        self.size = preprocessing.image_size if preprocessing.image_size != input_size else None
        self.register_buffer("mean", torch.tensor(preprocessing.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(preprocessing.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """A [0, 1] crop (N, 3, H, W) -> this member's pooled features."""
        if self.size is not None:
            x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", align_corners=False)
        x = (x - self.mean) / self.std
        for block in self.network.blocks():
            x = block(x)
        return x.mean((2, 3))


class Ensemble(nn.Module):
    """Members' features concatenated, as a 1x1 feature map (the graph's global pool passes it through)."""

    def __init__(self, members: Sequence[Member]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def blocks(self) -> list[nn.Module]:
        """The whole ensemble as one unit."""
        return [self]  # one frozen unit: nothing in it is fine-tuned

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's features side by side, as an (N, D, 1, 1) map."""
        return torch.cat([member(x) for member in self.members], dim=1)[:, :, None, None]


def assemble(members: Sequence[BackboneSpec], input_size: int, networks: Sequence[nn.Module] | None = None) -> Ensemble:
    """The ensemble of `members` on crops of `input_size` (their `networks`, else freshly built ones)."""
    networks = networks if networks is not None else [m.build() for m in members]
    return Ensemble([Member(net, m.preprocessing, input_size) for net, m in zip(networks, members)])
