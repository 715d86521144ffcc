"""The on-disk feature cache: one entry per (image content, backbone recipe).

It is only a cache: every entry carries a checksum and is written atomically; a damaged entry (a
power cut, a full disk, a stray edit) is reported once and recomputed, and a location that can't
be written means running uncached, with a warning, never an error. Entries are not fsynced: the
checksum already catches what a power cut leaves, and an fsync per image cost 0.45 ms of the
~4 ms each image takes here.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..fsutil import atomic_write_bytes, usable_cache_dir, warn_once

LAYOUT = "features-v2"  # float32 row + its sha256; entries of other layouts are never read
DIGEST = 32


class FeatureCache:
    """Rows of `dim` float32 features keyed by an image's content sha256, under a recipe key
    (backbone, weights, preprocessing, augmentation view). Reads never unpickle."""

    def __init__(self, root: Path, key: str, dim: int):
        self.root = Path(root)
        self.dir = self.root / LAYOUT / key
        self.dim = dim
        self.usable = usable_cache_dir(self.dir)

    @classmethod
    def open(cls, root: Path, key: str, dim: int) -> FeatureCache | None:
        """The cache, or None (after a warning) when its location can't be written."""
        cache = cls(root, key, dim)
        return cache if cache.usable else None

    def _path(self, content_hash: str) -> Path:
        return self.dir / content_hash[:2] / f"{content_hash}.f32"

    def has(self, content_hash: str) -> bool:
        """An entry is there (not read: `get` still checks it)."""
        return self._path(content_hash).exists()

    def get(self, content_hash: str) -> np.ndarray | None:
        """The cached row, or None when missing or damaged (then recomputed and rewritten)."""
        path = self._path(content_hash)
        try:
            with open(path, "rb") as f:
                blob = f.read(4 * self.dim + DIGEST + 1)
        except OSError:
            return None
        row = np.frombuffer(blob[:-DIGEST], dtype="<f4") if len(blob) == 4 * self.dim + DIGEST else None
        if row is None or hashlib.sha256(blob[:-DIGEST]).digest() != blob[-DIGEST:] or not np.isfinite(row).all():
            warn_once(f"feature cache: damaged entries (first: {path}) are being recomputed", key=str(self.dir))
            return None
        return row.astype(np.float32)

    def put(self, content_hash: str, features: np.ndarray) -> None:
        """Store a row (a row that is not finite or not `dim` wide is not stored)."""
        row = np.ascontiguousarray(features, dtype="<f4").reshape(-1)
        if row.size != self.dim or not np.isfinite(row).all():
            return  # never cache what a later run could not use
        blob = row.tobytes()
        try:
            atomic_write_bytes(self._path(content_hash), blob + hashlib.sha256(blob).digest())
        except OSError as e:  # full or read-only now: the run goes on without caching
            warn_once(
                f"feature cache {self.dir}: can't write ({e.strerror or e}); continuing without it",
                key=f"put {self.dir}",
            )


class SplitCache:
    """Rows stored as consecutive slices in several caches, one per feature-ensemble member: each
    member's features stay reusable by any ensemble that shares the member (and the crop)."""

    def __init__(self, parts: list[FeatureCache]):
        self.parts = parts
        self.root = parts[0].root
        self.dim = sum(part.dim for part in parts)
        self._bounds = np.cumsum([0] + [part.dim for part in parts])

    def has(self, content_hash: str) -> bool:
        """Every member has its slice of the row."""
        return all(part.has(content_hash) for part in self.parts)

    def get(self, content_hash: str) -> np.ndarray | None:
        """The whole row, or None unless every member has its slice."""
        rows = []
        for part in self.parts:
            if (row := part.get(content_hash)) is None:
                return None
            rows.append(row)
        return np.concatenate(rows)

    def put(self, content_hash: str, features: np.ndarray) -> None:
        """Store each member's slice of the row in that member's cache."""
        row = np.asarray(features).reshape(-1)
        for part, start, end in zip(self.parts, self._bounds[:-1], self._bounds[1:]):
            part.put(content_hash, row[start:end])
