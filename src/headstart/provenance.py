"""What a model was made with: library versions and platform, recorded in bundles and reports."""

from __future__ import annotations

import platform

from .version import __version__


def environment() -> dict[str, str]:
    """Versions of headstart, Python and the libraries that decide a model's numbers."""
    import numpy
    import onnxruntime
    import PIL
    import torch

    return {
        "headstart": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "pillow": PIL.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }
