import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# One feature/ONNX cache for the whole session (so the backbone is exported once), never the user's.
os.environ["HEADSTART_CACHE"] = tempfile.mkdtemp(prefix="headstart-test-cache-")
os.environ["HEADSTART_QUIET"] = "1"

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"
HYMENOPTERA = SHARED / "hymenoptera"
ALPACA = SHARED / "alpaca"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(os.environ["HEADSTART_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def hymenoptera() -> Path:
    assert HYMENOPTERA.is_dir(), f"the shared datasets must sit beside the repo: {HYMENOPTERA}"
    return HYMENOPTERA


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


@pytest.fixture
def colour_folder(tmp_path) -> Path:
    """Three visually distinct classes, 10 images each: red, green, blue."""
    root = tmp_path / "colours"
    for c, colour in enumerate([(220, 20, 20), (20, 200, 20), (20, 20, 220)]):
        for i in range(10):
            make_image(root / ["red", "green", "blue"][c] / f"{i}.png", colour, seed=100 * c + i)
    return root


@pytest.fixture(scope="session")
def small_hymenoptera(tmp_path_factory, hymenoptera) -> Path:
    """A pre-split copy with 12 train and 6 val images per class: real photos, quick to train."""
    root = tmp_path_factory.mktemp("hym-small")
    for split, n in (("train", 12), ("val", 6)):
        for cls in ("ants", "bees"):
            files = sorted(p for p in (hymenoptera / split / cls).iterdir() if p.suffix == ".jpg")[:n]
            (root / split / cls).mkdir(parents=True)
            for f in files:
                shutil.copy(f, root / split / cls / f.name)
    return root
