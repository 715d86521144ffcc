"""The networks headstart builds around a backbone: the new head, and one graph from uint8 crops
to features, activations or probabilities (normalisation inside, so every export carries it)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..options import check_tta
from ..preprocessing import Preprocessing


def build_head(in_features: int, num_classes: int, hidden: tuple[int, ...] = (), dropout: float = 0.2) -> nn.Sequential:
    """Dropout + Linear (the reference recipe), optionally with dense+ReLU layers before it."""
    layers: list[nn.Module] = []
    width = in_features
    for h in hidden:
        layers += [nn.Dropout(dropout), nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    layers += [nn.Dropout(dropout), nn.Linear(width, num_classes)]
    return nn.Sequential(*layers)


class Normalize(nn.Module):
    """uint8 (N, H, W, 3) -> normalised float (N, 3, H, W) as `preprocessing` says: inside the
    graph, so that every export carries it."""

    def __init__(self, preprocessing: Preprocessing):
        super().__init__()
        self.register_buffer(
            "mean", torch.tensor(preprocessing.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255, persistent=False
        )
        self.register_buffer(
            "std", torch.tensor(preprocessing.std, dtype=torch.float32).view(1, 3, 1, 1) * 255, persistent=False
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 NHWC images -> normalised float NCHW."""
        return (images.permute(0, 3, 1, 2).float() - self.mean) / self.std


class ModelGraph(nn.Module):
    """uint8 RGB crops (N, H, W, 3) -> normalise -> `blocks` -> [pool -> [head -> softmax]].

    With every block of a backbone it returns pooled features (N, D); with a head too,
    probabilities (N, classes) at softmax temperature `temperature`; with `pool=False` and the
    lower blocks only, their activations (fine-tuning caches those). With `tta="flip"` the pooled
    features are the mean of the crop's and its mirror image's.
    """

    def __init__(
        self,
        preprocessing: Preprocessing,
        blocks: Sequence[nn.Module],
        head: nn.Module | None = None,
        temperature: float = 1.0,
        pool: bool = True,
        tta: str = "none",
    ):
        super().__init__()
        check_tta(tta)
        self.normalize = Normalize(preprocessing)
        self.blocks = nn.ModuleList(blocks)
        self.head = head
        self.temperature = float(temperature)
        self.pool = pool
        self.tta = tta

    @classmethod
    def features(cls, backbone: nn.Module, preprocessing: Preprocessing, tta: str = "none") -> ModelGraph:
        """uint8 crops -> the backbone's pooled features."""
        return cls(preprocessing, backbone.blocks(), tta=tta)

    @classmethod
    def classifier(
        cls,
        backbone: nn.Module,
        head: nn.Module,
        preprocessing: Preprocessing,
        temperature: float = 1.0,
        tta: str = "none",
    ) -> ModelGraph:
        """uint8 crops -> class probabilities."""
        return cls(preprocessing, backbone.blocks(), head, temperature, tta=tta)

    def activations(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 crops -> the last block's activation map."""
        x = self.normalize(images)
        for block in self.blocks:
            x = block(x)
        return x

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 crops -> features, probabilities or activations, as built."""
        if not self.pool:
            return self.activations(images)
        if self.tta == "flip":  # both views in one batch: one pass through the backbone
            x = self.activations(torch.cat([images, images.flip(2)])).mean((2, 3))
            x = x.unflatten(0, (2, -1)).mean(0)
        else:
            x = self.activations(images).mean((2, 3))
        if self.head is None:
            return x
        logits = self.head(x)
        return torch.softmax(logits / self.temperature if self.temperature != 1.0 else logits, dim=1)
