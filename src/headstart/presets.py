"""Presets: measured combinations of backbone and test-time augmentation, one flag each
(`headstart train --preset best`, `headstart.train(data, preset="best")`).

The figures: accuracy on imagewoof-320-sub val (mean of 3 seeds, bench/accuracy.py) and the
latency of one decoded image through backbone and head (`headstart compare`), on this project's
2-core CPU. Torch-free, so that `--help` can show them.
"""

from __future__ import annotations

# Ensembles `headstart compare` tries besides every single backbone (bench/accuracy.py measured them).
ENSEMBLES = ("efficientnet_lite1+efficientnet_lite2",)

PRESETS: dict[str, dict] = {
    "fast": {
        "settings": {"backbone": "mobilenet_v2", "tta": "none"},
        "summary": "mobilenet_v2, the default (0.938 on imagewoof-320-sub, 5 ms an image)",
    },
    "balanced": {
        "settings": {"backbone": "efficientnet_lite1", "tta": "none"},
        "summary": "efficientnet_lite1 (0.960, 15 ms)",
    },
    "best": {
        "settings": {"backbone": ENSEMBLES[0], "tta": "flip"},
        "summary": f"{ENSEMBLES[0]} with --tta flip (0.972, 68 ms)",
    },
}
