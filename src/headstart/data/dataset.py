"""Scan a folder of images into labelled samples with train/val/test splits.

Layouts: `DATA/<class>/*` (split here: stratified, seeded) or pre-split
`DATA/{train,val,test}/<class>/*` (`valid`/`validation` accepted for val).
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HeadstartError
from .images import is_image_path

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test", "testing": "test"}
IMBALANCE_RATIO = 3.0  # largest/smallest class in train at which we warn


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int
    split: str


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass
class Dataset:
    """Labelled images of one folder, split, plus every file that was left out and why."""

    root: Path
    classes: list[str]
    samples: list[Sample]
    skipped: list[Skipped] = field(default_factory=list)
    presplit: bool = False

    def split(self, name: str) -> list[Sample]:
        return [s for s in self.samples if s.split == name]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class per split, in class order."""
        out = {}
        for split in SPLITS:
            c = Counter(s.label for s in self.samples if s.split == split)
            if c:
                out[split] = {name: c.get(i, 0) for i, name in enumerate(self.classes)}
        return out

    def imbalance(self) -> float:
        counts = [n for n in self.counts().get("train", {}).values()]
        return max(counts) / max(min(counts), 1) if counts else 1.0

    def drop(self, failures: dict[Path, str]) -> None:
        """Remove samples that turned out to be unreadable, recording why."""
        if not failures:
            return
        self.samples = [s for s in self.samples if s.path not in failures]
        self.skipped += [Skipped(str(p), r) for p, r in failures.items()]
        self.validate()

    def validate(self) -> None:
        train = Counter(s.label for s in self.split("train"))
        empty = [name for i, name in enumerate(self.classes) if train.get(i, 0) == 0]
        if empty:
            raise HeadstartError(f"{self.root}: class {empty[0]!r} has no usable training image")
        if len(self.classes) < 2:
            raise HeadstartError(f"{self.root}: need at least 2 classes (one sub-folder each), found {len(self.classes)}")


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _files(class_dir: Path, skipped: list[Skipped]) -> list[Path]:
    """Image files below a class folder (recursively), hidden ones ignored, others recorded."""
    out = []
    for p in sorted(class_dir.rglob("*")):
        rel = p.relative_to(class_dir)
        if any(part.startswith(".") for part in rel.parts) or not p.is_file():
            continue
        if is_image_path(p):
            out.append(p)
        else:
            skipped.append(Skipped(str(p), f"not an image file type ({p.suffix or 'no extension'})"))
    return out


def scan(
    root: str | Path,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
) -> Dataset:
    """Find classes and images under `root` and assign every image to a split."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise HeadstartError(f"{root}: no such folder")
    subdirs = {SPLIT_ALIASES.get(p.name.lower()): p for p in _class_dirs(root)}
    subdirs.pop(None, None)
    skipped: list[Skipped] = []
    if "train" in subdirs:
        classes = [p.name for p in _class_dirs(subdirs["train"])]
        index = {name: i for i, name in enumerate(classes)}
        samples = []
        for split, folder in subdirs.items():
            for class_dir in _class_dirs(folder):
                if class_dir.name not in index:
                    raise HeadstartError(f"{class_dir}: class {class_dir.name!r} is not in {subdirs['train']}")
                samples += [Sample(p, index[class_dir.name], split) for p in _files(class_dir, skipped)]
        if "val" not in subdirs:  # carve validation out of train, stratified
            samples = _assign(samples, {"val": val_fraction}, seed, only="train")
        dataset = Dataset(root, classes, samples, skipped, presplit=True)
    else:
        class_dirs = _class_dirs(root)
        classes = [p.name for p in class_dirs]
        samples = [Sample(p, i, "train") for i, d in enumerate(class_dirs) for p in _files(d, skipped)]
        samples = _assign(samples, {"test": test_fraction, "val": val_fraction}, seed, only="train")
        dataset = Dataset(root, classes, samples, skipped)
    if not dataset.samples:
        raise HeadstartError(f"{root}: no images found (expected {root}/<class>/<image> or {root}/train/<class>/<image>)")
    dataset.validate()
    return dataset


def _assign(samples: list[Sample], fractions: dict[str, float], seed: int, only: str) -> list[Sample]:
    """Move a seeded, per-class random share of the `only` split into the splits in `fractions`."""
    for name, frac in fractions.items():
        if not 0 <= frac < 1:
            raise HeadstartError(f"{name} fraction must be in [0, 1), got {frac}")
    if sum(fractions.values()) >= 1:
        raise HeadstartError("validation and test fractions leave no training images")
    rng = random.Random(seed)
    by_class: dict[int, list[Sample]] = {}
    for s in samples:
        if s.split == only:
            by_class.setdefault(s.label, []).append(s)
    moved: dict[Path, str] = {}
    for label in sorted(by_class):
        group = sorted(by_class[label], key=lambda s: str(s.path))
        rng.shuffle(group)
        start = 0
        for name, frac in fractions.items():
            # Every class gets at least one held-out image when it has three or more.
            n = round(len(group) * frac)
            if frac > 0 and n == 0 and len(group) >= 3:
                n = 1
            for s in group[start : start + n]:
                moved[s.path] = name
            start += n
    return [Sample(s.path, s.label, moved.get(s.path, s.split)) for s in samples]
