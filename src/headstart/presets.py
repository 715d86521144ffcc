"""Presets: measured combinations of backbone and test-time augmentation, one flag each
(`headstart train --preset best`, `headstart.train(data, preset="best")`).

The figures are bench/accuracy.py's (accuracy on imagewoof-320-sub val, mean of 3 seeds) and its
single-image latency on this project's 2-core CPU. Torch-free, so `--help` can show them.
"""

from __future__ import annotations

# Ensembles `headstart compare` tries besides every single backbone (bench/accuracy.py measured them).
ENSEMBLES = ("efficientnet_lite1+efficientnet_lite2",)

PRESETS: dict[str, dict] = {
    "fast": {
        "settings": {"backbone": "mobilenet_v2", "tta": "none"},
        "summary": "mobilenet_v2 (TODO)",
    },
    "balanced": {
        "settings": {"backbone": "efficientnet_lite1", "tta": "none"},
        "summary": "efficientnet_lite1 (TODO)",
    },
    "best": {
        "settings": {"backbone": ENSEMBLES[0], "tta": "flip"},
        "summary": f"{ENSEMBLES[0]} with flip test-time augmentation (TODO)",
    },
}
