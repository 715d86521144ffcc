"""MobileNetV2 (Sandler et al., 2018) with torchvision-compatible state_dict keys; its configuration
is in `..specs.mobilenet_v2`."""

from __future__ import annotations

import torch
from torch import nn

from ..specs.mobilenet_v2 import FEATURE_DIM, INVERTED_RESIDUAL_SETTING


def conv_bn_relu6(inp: int, out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """Convolution, BatchNorm, ReLU6: the unit MobileNetV2 is made of."""
    return nn.Sequential(
        nn.Conv2d(inp, out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, project (1x1); a residual connection when shapes allow."""

    def __init__(self, inp: int, out: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = inp * expand_ratio
        self.use_residual = stride == 1 and inp == out
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(inp, hidden, kernel=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, out, 1, bias=False),
            nn.BatchNorm2d(out),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block on activations (N, C, H, W)."""
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """The ImageNet network: `forward_features` gives the pooled features, `blocks()` the units
    fine-tuning unfreezes from the top."""

    feature_dim = FEATURE_DIM

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        layers: list[nn.Module] = [conv_bn_relu6(3, 32, stride=2)]
        inp = 32
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                layers.append(InvertedResidual(inp, c, s if i == 0 else 1, t))
                inp = c
        layers.append(conv_bn_relu6(inp, self.feature_dim, kernel=1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.feature_dim, num_classes))

    def blocks(self) -> list[nn.Module]:
        """Unfreezable units, bottom to top: the stem, 17 inverted residuals, the 1x1 head conv."""
        return list(self.features)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, H, W) -> pooled features (N, 1280)."""
        return self.features(x).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000)."""
        return self.classifier(self.forward_features(x))
