"""How pixels reach a backbone: the recipe it was trained with, recorded in every bundle."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

from .fsutil import dict_fingerprint

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class Preprocessing:
    """Resize the short side to `resize_short`, centre-crop `image_size`, scale to [0, 1], normalise."""

    image_size: int = 224
    resize_short: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        """JSON-shaped: tuples become lists, so a dict read back from JSON compares equal."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        """From `to_dict`'s form (model.json, an export's metadata)."""
        return cls(
            image_size=int(d["image_size"]),
            resize_short=int(d["resize_short"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            interpolation=str(d["interpolation"]),
        )

    @property
    def fingerprint(self) -> str:
        """A short hash of the recipe: cached features and graphs are keyed by it."""
        return dict_fingerprint(self.to_dict())

    def crop_box(self, width: float, height: float) -> tuple[float, float, float]:
        """The geometry, the one definition: the centre square of a `width` × `height` image that
        becomes the crop, as (left, top, side) in source pixels (fractional). It is the square that
        resizing the short side to `resize_short` and centre-cropping `image_size` keeps; the exported
        graphs compute the same box with this same code (`inference/pixels.py`: numbers or tensors)."""
        short = (width + height - abs(width - height)) / 2  # min(), without a branch a graph would freeze
        side = short * self.image_size / self.resize_short
        return (width - side) / 2, (height - side) / 2, side

    def crop(self, image: Image.Image) -> Image.Image:
        """The centre `image_size` square of the image resized to `resize_short` on its short side.

        One resize of the fractional `crop_box` (PIL's `box`): no rounding to whole pixels between a
        resize and a crop, and only the pixels that survive are resampled.
        """
        left, top, side = self.crop_box(*image.size)
        return image.resize(
            (self.image_size, self.image_size), RESAMPLE[self.interpolation], box=(left, top, left + side, top + side)
        )

    def __call__(self, image: Image.Image) -> np.ndarray:
        """An RGB image as the uint8 (H, W, 3) array the model graph takes; it normalises itself."""
        return np.array(self.crop(image), dtype=np.uint8)  # a writable copy: torch.from_numpy needs one
