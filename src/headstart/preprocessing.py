"""How pixels reach a backbone: the recipe it was trained with, recorded in every bundle."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}


@dataclass(frozen=True)
class Preprocessing:
    """Resize the short side to `resize_short`, centre-crop `image_size`, scale to [0, 1], normalise."""

    image_size: int = 224
    resize_short: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Preprocessing:
        return cls(
            image_size=int(d["image_size"]),
            resize_short=int(d["resize_short"]),
            mean=tuple(float(v) for v in d["mean"]),
            std=tuple(float(v) for v in d["std"]),
            interpolation=str(d["interpolation"]),
        )

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]

    def crop(self, image: Image.Image) -> Image.Image:
        """Resize (short side) and centre-crop an RGB image to `image_size` squared."""
        w, h = image.size
        scale = self.resize_short / min(w, h)
        new_w, new_h = max(self.image_size, round(w * scale)), max(self.image_size, round(h * scale))
        image = image.resize((new_w, new_h), _RESAMPLE[self.interpolation], reducing_gap=None)
        left, top = (new_w - self.image_size) // 2, (new_h - self.image_size) // 2
        return image.crop((left, top, left + self.image_size, top + self.image_size))

    def to_array(self, image: Image.Image) -> np.ndarray:
        """A cropped RGB image as a normalised float32 CHW array."""
        x = np.asarray(image, dtype=np.float32) * (1.0 / 255.0)
        x = (x - np.asarray(self.mean, np.float32)) / np.asarray(self.std, np.float32)
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def __call__(self, image: Image.Image) -> np.ndarray:
        return self.to_array(self.crop(image))
