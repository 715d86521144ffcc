"""An uploaded image to the model's input: the decode and crop `headstart predict` uses."""

from __future__ import annotations

import numpy as np

from ..data.images import ImageDecodeError, decode
from ..display import printable
from ..inference.predictor import Predictor
from .errors import ApiError

MAX_IMAGE_BYTES = 20 << 20  # a phone photo is 2-12 MB


def prepare_crop(data: bytes, filename: str, predictor: Predictor) -> np.ndarray:
    """Decode and crop as `headstart predict` does (same `decode`, same preprocessing); an
    unreadable image is a 422 naming the file."""
    try:
        image = decode(data, min_size=predictor.preprocessing.resize_short)
    except ImageDecodeError as e:
        raise ApiError(422, f"{printable(filename) or 'image'}: {e}") from None
    return predictor.preprocessing(image)
