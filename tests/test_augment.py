"""Augmentation: seeded per image and view, flips optional, presets checked."""

import numpy as np
import pytest
from PIL import Image

from headstart.data.augment import Augmentation, make_augmentation, rng_for
from headstart.errors import HeadstartError
from headstart.preprocessing import Preprocessing

PP = Preprocessing()


def halves() -> Image.Image:
    image = Image.new("RGB", (300, 300), (255, 0, 0))
    image.paste((0, 0, 255), (150, 0, 300, 300))  # red left, blue right
    return image


def test_augmentation_is_seeded_per_image_and_view():
    aug = make_augmentation("strong")
    a = aug(halves(), PP, rng_for(1, "ab" * 32, 0))
    assert np.array_equal(a, aug(halves(), PP, rng_for(1, "ab" * 32, 0)))
    assert not np.array_equal(a, aug(halves(), PP, rng_for(1, "ab" * 32, 1)))  # another view
    assert not np.array_equal(a, aug(halves(), PP, rng_for(2, "ab" * 32, 0)))  # another seed
    assert a.shape == (224, 224, 3) and a.dtype == np.uint8


def test_flips_can_be_turned_off():
    still = Augmentation(scale=(1.0, 1.0), ratio=(1.0, 1.0), rotation=0.0, flip=False)
    flipping = Augmentation(scale=(1.0, 1.0), ratio=(1.0, 1.0), rotation=0.0, flip=True)
    left_is_red = lambda crop: crop[112, 10, 0] > 200 and crop[112, 10, 2] < 50  # noqa: E731
    assert all(left_is_red(still(halves(), PP, rng_for(0, "cd" * 32, v))) for v in range(20))
    assert not all(left_is_red(flipping(halves(), PP, rng_for(0, "cd" * 32, v))) for v in range(20))
    with pytest.raises(HeadstartError, match="unknown augmentation preset"):
        make_augmentation("wild")
