"""Test data made in code."""

from pathlib import Path

import numpy as np
from PIL import Image


def make_image(path: Path, colour=(200, 30, 30), size=(64, 48), mode="RGB", fmt=None, seed=0) -> Path:
    """A small noisy image of a dominant colour (noise so that no two files are identical)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour, np.float32) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path
