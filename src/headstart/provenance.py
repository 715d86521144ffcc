"""What a model was made with: library versions and platform, recorded in bundles and reports."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from .version import __version__

LIBRARIES = ("torch", "onnxruntime", "pillow", "numpy")  # the ones that decide a model's numbers


def environment() -> dict[str, str]:
    """Versions of headstart, Python and the libraries that decide a model's numbers.

    Read from package metadata, so that recording them imports nothing (onnxruntime alone takes
    ~0.2 s to import, and a training run on cached features never needs it).
    """
    return {
        "headstart": __version__,
        "python": platform.python_version(),
        **{name: _version(name) for name in LIBRARIES},
        "platform": platform.platform(),
    }


def _version(distribution: str) -> str:
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "not installed"
