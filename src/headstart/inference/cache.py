"""The on-disk feature cache: one float32 .npy per (image content, backbone recipe)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from ..fsutil import atomic_write_bytes


class FeatureCache:
    """Features keyed by an image's content sha256 under a recipe key (backbone, weights,
    preprocessing, augmentation view); writes are atomic, reads never unpickle."""

    def __init__(self, root: Path, key: str):
        self.dir = Path(root) / "features" / key

    def _path(self, content_hash: str) -> Path:
        return self.dir / content_hash[:2] / f"{content_hash}.npy"

    def get(self, content_hash: str) -> np.ndarray | None:
        try:
            return np.load(self._path(content_hash), allow_pickle=False)
        except (OSError, ValueError):
            return None  # missing or damaged: recompute

    def put(self, content_hash: str, features: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(features, dtype=np.float32), allow_pickle=False)
        atomic_write_bytes(self._path(content_hash), buf.getvalue())
