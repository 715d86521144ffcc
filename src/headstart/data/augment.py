"""Augmentation presets: random resized crop, flips, small rotations, colour jitter. Every draw is
seeded by (seed, image content, view or epoch), so results do not depend on order or threads."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageEnhance

from ..errors import HeadstartError
from ..fsutil import dict_fingerprint
from ..preprocessing import RESAMPLE, Preprocessing

if TYPE_CHECKING:
    from ..hparams import HParams


@dataclass(frozen=True)
class Augmentation:
    """One augmentation recipe: crop, flip, rotation and colour jitter ranges (`PRESETS` holds the named ones)."""

    scale: tuple[float, float] = (0.6, 1.0)  # area of the crop, as a share of the image
    ratio: tuple[float, float] = (3 / 4, 4 / 3)  # aspect ratio range of the crop
    flip: bool = True  # horizontal flips (turn off where left and right matter)
    rotation: float = 10.0  # degrees, either way
    brightness: float = 0.0  # jitter factors: 0.3 means x0.7 .. x1.3
    contrast: float = 0.0
    saturation: float = 0.0

    @property
    def fingerprint(self) -> str:
        """A short hash of the recipe: augmented views are cached under it."""
        return dict_fingerprint(asdict(self), length=12)

    def to_dict(self) -> dict:
        """JSON-shaped."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def __call__(self, image: Image.Image, preprocessing: Preprocessing, rng: np.random.Generator) -> np.ndarray:
        """One augmented uint8 crop (H, W, 3) of an RGB image, the size the model takes."""
        w, h = image.size
        if self.rotation:
            angle = rng.uniform(-self.rotation, self.rotation)
            image = image.rotate(
                angle, resample=Image.Resampling.BILINEAR, expand=False, fillcolor=_mean_colour(preprocessing)
            )
        for _ in range(10):  # torchvision's RandomResizedCrop: sample area and ratio, retry if off the image
            area = w * h * rng.uniform(*self.scale)
            ratio = math.exp(rng.uniform(math.log(self.ratio[0]), math.log(self.ratio[1])))
            cw, ch = math.sqrt(area * ratio), math.sqrt(area / ratio)
            if cw <= w and ch <= h:
                left, top = rng.uniform(0, w - cw), rng.uniform(0, h - ch)
                break
        else:  # fall back to the centre square
            cw = ch = min(w, h)
            left, top = (w - cw) / 2, (h - ch) / 2
        size = preprocessing.image_size
        crop = image.resize((size, size), RESAMPLE[preprocessing.interpolation], box=(left, top, left + cw, top + ch))
        if self.flip and rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        for amount, enhancer in (
            (self.brightness, ImageEnhance.Brightness),
            (self.contrast, ImageEnhance.Contrast),
            (self.saturation, ImageEnhance.Color),
        ):
            if amount:
                crop = enhancer(crop).enhance(rng.uniform(1 - amount, 1 + amount))
        return np.array(crop, dtype=np.uint8)


def _mean_colour(preprocessing: Preprocessing) -> tuple[int, int, int]:
    return tuple(int(round(m * 255)) for m in preprocessing.mean)


PRESETS: dict[str, Augmentation | None] = {
    "none": None,
    "light": Augmentation(),
    "strong": Augmentation(scale=(0.35, 1.0), rotation=20.0, brightness=0.3, contrast=0.3, saturation=0.3),
}


def make_augmentation(preset: str = "none", flip: bool = True, **overrides) -> Augmentation | None:
    """A preset with per-transform overrides (None values are ignored)."""
    if preset not in PRESETS:
        raise HeadstartError(f"unknown augmentation preset {preset!r}; choose one of: {', '.join(PRESETS)}")
    base = PRESETS[preset]
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if base is None:
        if overrides:
            raise HeadstartError("augmentation overrides need a preset: --augment light or strong")
        return None
    return replace(base, flip=flip, **overrides)


def rng_for(seed: int, content_hash: str, stream: int) -> np.random.Generator:
    """Independent, reproducible randomness per (seed, image, view or epoch)."""
    return np.random.default_rng([seed, int(content_hash[:15], 16), stream])


def augmentation_of(hp: HParams) -> Augmentation | None:
    """The training augmentation a model's settings describe (`--augment` and its overrides), or None."""
    color = hp.aug_color
    return make_augmentation(
        hp.augment,
        flip=hp.flip,
        scale=(hp.aug_scale, 1.0) if hp.aug_scale is not None else None,
        rotation=hp.aug_rotation,
        brightness=color,
        contrast=color,
        saturation=color,
    )
