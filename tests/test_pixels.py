"""The crop inside the exported graphs (`inference/pixels.py`) against headstart's own crop with
Pillow (`Preprocessing`), on real photos at sizes hypothesis picks, and the graph's dynamic size in
onnxruntime."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from headstart.inference.pixels import CentreCrop, export_centre_crop
from headstart.preprocessing import Preprocessing

# Pillow's fixed-point weights and its own order of passes against float32 (see inference/pixels.py):
# (largest difference in grey levels, share of pixels more than one level off).
BOUNDS = {"bilinear": (2, 0.01), "bicubic": (16, 0.05)}


@pytest.fixture(scope="module")
def photos(hymenoptera) -> list[Image.Image]:
    paths = sorted((hymenoptera / "val").rglob("*.jpg"))[::15]
    return [Image.open(p).convert("RGB") for p in paths]


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic"])
@settings(max_examples=25, deadline=None)
@given(
    width=st.integers(1, 1600),
    height=st.integers(1, 1600),
    which=st.integers(0, 10),
)
def test_the_graph_crop_is_pillows_crop(photos, interpolation, width, height, which):
    preprocessing = Preprocessing(interpolation=interpolation)
    image = photos[which % len(photos)].resize((width, height), Image.Resampling.BILINEAR)
    ours = preprocessing(image).astype(int)
    graph = CentreCrop(preprocessing)(torch.from_numpy(np.array(image))[None])[0].numpy().astype(int)
    difference = np.abs(ours - graph)
    largest, share = BOUNDS[interpolation]
    assert difference.max() <= largest and (difference > 1).mean() <= share, (width, height, difference.max())


def test_the_exported_crop_takes_any_size(tmp_path):
    import onnxruntime

    preprocessing = Preprocessing()
    path = tmp_path / "crop.onnx"
    export_centre_crop(preprocessing, path)
    session = onnxruntime.InferenceSession(str(path))
    rng = np.random.default_rng(0)
    for height, width in [(300, 400), (1000, 37), (17, 3000), (224, 224), (1, 1)]:
        pixels = rng.integers(0, 256, (1, height, width, 3), dtype=np.uint8)
        crop = session.run(None, {"pixels": pixels})[0]
        assert crop.shape == (1, 224, 224, 3) and crop.dtype == np.uint8
        eager = CentreCrop(preprocessing)(torch.from_numpy(pixels)).numpy()
        assert np.abs(crop.astype(int) - eager).max() <= 1  # float summation order only
