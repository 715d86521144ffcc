"""Backbone features of a whole dataset, looked up by sample: what both training stages,
calibration and the leakage check read."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.dataset import Dataset
from ..distributed.ddp import Ranks
from ..evaluation.leakage import LeakageReport, check_leakage
from ..evaluation.record import History
from ..inference.features import Extraction, FeatureExtractor


@dataclass
class DatasetFeatures:
    """Backbone features of every sample of a dataset (unreadable files dropped from it)."""

    extraction: Extraction
    rows: dict[Path, int]  # image path -> row of extraction.features
    seconds: float

    @classmethod
    def extract(
        cls, extractor: FeatureExtractor, dataset: Dataset, events, ranks: Ranks | None = None
    ) -> DatasetFeatures:
        """Features of every sample; DDP ranks each compute a share into the cache first, then read all."""
        started = time.perf_counter()
        paths = [s.path for s in dataset.samples]
        if ranks is not None and ranks.distributed:
            extractor.extract(ranks.share(paths), events=events)
            ranks.barrier()
        extraction = extractor.extract(paths, events=events)
        return cls(extraction, {paths[i]: row for row, i in enumerate(extraction.ok)}, time.perf_counter() - started)

    def of(self, samples: list) -> np.ndarray:
        """The feature rows of `samples`, in their order."""
        return self.extraction.features[[self.rows[s.path] for s in samples]]

    def by_split(self, dataset: Dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(features, labels) per non-empty split."""
        return {
            split: (self.of(samples), np.array([s.label for s in samples], dtype=np.int64))
            for split in ("train", "val", "test")
            if (samples := dataset.split(split))
        }

    def leakage(self, dataset: Dataset, threshold: float, history: History) -> LeakageReport:
        """The near-duplicate check on these features."""
        samples = dataset.samples
        hashes = [self.extraction.hashes[self.rows[s.path]] for s in samples]
        return check_leakage(
            [str(s.path) for s in samples],
            [s.split for s in samples],
            self.of(samples),
            hashes,
            threshold,
            history.to_dict(),
        )
