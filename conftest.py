"""Fixtures shared by the tests and by the docstring examples in src/ (run as doctests)."""

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.helpers import make_image

# One feature/ONNX cache for the whole session (so the backbone is exported once), never the user's.
os.environ["HEADSTART_CACHE"] = tempfile.mkdtemp(prefix="headstart-test-cache-")
os.environ["HEADSTART_QUIET"] = "1"
# The web export's onnxruntime-web files come from `make install`; a test never fetches from npm.
os.environ["HEADSTART_NPM_REGISTRY"] = "http://127.0.0.1:9"

SHARED = Path(__file__).resolve().parent.parent / "shared" / "datasets"
HYMENOPTERA = SHARED / "hymenoptera"
ALPACA = SHARED / "alpaca"


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(os.environ["HEADSTART_CACHE"], ignore_errors=True)


@pytest.fixture(scope="session")
def hymenoptera() -> Path:
    assert HYMENOPTERA.is_dir(), f"the shared datasets must sit beside the repo: {HYMENOPTERA}"
    return HYMENOPTERA


@pytest.fixture(scope="session")
def alpaca() -> Path:
    assert ALPACA.is_dir(), f"the shared datasets must sit beside the repo: {ALPACA}"
    return ALPACA


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


@pytest.fixture(autouse=True)
def docstring_examples(request, doctest_namespace):
    """What the examples in docstrings (doctests) may use: a tiny real dataset and a scratch folder."""
    if not hasattr(request.node, "dtest"):
        return
    import numpy as np

    import headstart

    doctest_namespace.update(
        headstart=headstart,
        np=np,
        ants_bees=request.getfixturevalue("small_hymenoptera"),
        tmp=request.getfixturevalue("tmp_path"),
    )


collect_ignore = ["src/headstart/__main__.py"]  # running it would run the CLI
