"""Labelled images that outlive training: the data summary a bundle records, and the image sets
evaluation, reports and exports run on (the held-out split of training, or any labelled folder)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import HeadstartError
from ..events import EventBus
from .dataset import SPLIT_ALIASES, Dataset, scan, split_folders
from .images import collect_images


@dataclass
class LabelledImages:
    """Image paths with label indices of a model's classes."""

    root: Path
    split: str  # "test" / "val" of the training split or a pre-split folder, else "all"
    paths: list[Path]
    labels: np.ndarray  # int64, one per path
    skipped: dict[Path, str] = field(default_factory=dict)


SAMPLE_CLASSES, SAMPLES_PER_CLASS = 12, 6


def sample_images(dataset: Dataset) -> dict[str, list[str]]:
    """Up to SAMPLES_PER_CLASS training images of each of the first SAMPLE_CLASSES classes, evenly
    spread through each class's files (relative paths)."""
    train = dataset.split("train")
    samples = {}
    for label, name in enumerate(dataset.classes[:SAMPLE_CLASSES]):
        paths = [s.path for s in train if s.label == label]
        picks = paths[:: max(1, len(paths) // SAMPLES_PER_CLASS)][:SAMPLES_PER_CLASS]
        samples[name] = [p.relative_to(dataset.root).as_posix() for p in picks]
    return samples


@dataclass
class DataSummary:
    """What a model was trained on, as recorded in model.json under "data"."""

    root: str
    classes: list[str]
    presplit: bool
    counts: dict[str, dict[str, int]]  # split -> class -> images
    imbalance: float  # largest / smallest class in train
    skipped: list[dict[str, str]] = field(default_factory=list)  # {"path", "reason"}
    notes: list[dict[str, str]] = field(default_factory=list)  # {"path", "note"}: used, but the decoder warned
    # The held-out images themselves, so that exports, reports and re-evaluations use exactly them.
    held_out: dict[str, list[list[str]]] = field(default_factory=dict)  # split -> [[relative path, class], ...]
    # What the report's sample figure shows: a few training images of the first classes, spread
    # over each class (relative paths), so that no report has to scan the folder again.
    samples: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def of(cls, dataset: Dataset) -> DataSummary:
        """The summary of a scanned dataset."""
        return cls(
            root=str(dataset.root.absolute()),
            classes=list(dataset.classes),
            presplit=dataset.presplit,
            counts=dataset.counts(),
            imbalance=round(dataset.imbalance(), 3),
            skipped=[{"path": s.path, "reason": s.reason} for s in dataset.skipped],
            notes=[{"path": path, "note": note} for path, note in dataset.notes.items()],
            held_out={
                split: [
                    [s.path.relative_to(dataset.root).as_posix(), dataset.classes[s.label]]
                    for s in dataset.split(split)
                ]
                for split in ("val", "test")
                if dataset.split(split)
            },
            samples=sample_images(dataset),
        )

    def to_dict(self) -> dict:
        """model.json's "data"."""
        return dict(vars(self))

    @classmethod
    def from_dict(cls, d: dict) -> DataSummary:
        """From model.json's "data" (fields it lacks keep their defaults)."""
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def located(self, data: str | Path | None = None) -> Path:
        """The training folder: `data` if given (it moved), else the recorded root."""
        root = Path(data).expanduser() if data else Path(self.root)
        if not root.is_dir():
            raise HeadstartError(f"{root}: the training images are not there any more; pass --data DIR")
        return root

    def held_out_images(self, classes: list[str], data: str | Path | None = None) -> LabelledImages:
        """The images the model was evaluated on at training: the test split, else validation."""
        root = self.located(data)
        split = "test" if self.held_out.get("test") else "val"
        rows = [
            (root / rel, classes.index(label)) for rel, label in self.held_out.get(split, []) if (root / rel).exists()
        ]
        return LabelledImages(root, split, [p for p, _ in rows], np.array([y for _, y in rows], dtype=np.int64))

    def training_images(self, data: str | Path | None = None, limit: int = 256) -> list[Path]:
        """Up to `limit` training images (none held out), spread over the classes."""
        root = self.located(data)
        held = {root / rel for rows in self.held_out.values() for rel, _ in rows}
        dataset = scan(root, 0.0, 0.0)
        pool = [s.path for s in (dataset.split("train") if dataset.presplit else dataset.samples) if s.path not in held]
        return pool[:: max(1, len(pool) // limit)][:limit]


@dataclass
class FolderImages:
    """Every image below a folder, in order, with its class name where the folder gives one (what
    `headstart embed` reads: any folder will do, unlike training)."""

    paths: list[Path]
    labels: list[str | None]
    classes: list[str]

    @classmethod
    def of(cls, data: str | Path) -> FolderImages:
        """Every image below `data`, labelled by folder as `train` reads it: <class>/<image>, or
        <split>/<class>/<image> when there is a train/ folder. Unlike training, any folder will do
        (one class, images loose at the top: those get no label)."""
        root = Path(data).expanduser()
        if not root.is_dir():
            raise HeadstartError(f"{root}: no such folder")
        paths, _ = collect_images([root])
        if not paths:
            raise HeadstartError(f"{root}: holds no image files")
        presplit = bool(split_folders(root))

        def label(path: Path) -> str | None:
            parts = path.relative_to(root).parts[:-1]
            if presplit and parts and SPLIT_ALIASES.get(parts[0].lower()):
                parts = parts[1:]
            return parts[0] if parts else None

        labels = [label(p) for p in paths]
        return cls(paths, labels, sorted({name for name in labels if name is not None}))


def labelled_folder(data: str | Path, classes: list[str], events: EventBus | None = None) -> LabelledImages:
    """The images of a labelled folder to evaluate a model on: its test split if pre-split (else
    val), else all of them; a class the model does not know is an error."""
    from .remote import resolve_data  # urllib and ssl: only for a dataset named by URL

    dataset = scan(resolve_data(data, events), val_fraction=0.0, test_fraction=0.0, events=events)
    split = next((s for s in ("test", "val") if dataset.presplit and dataset.split(s)), "train")
    index = {name: i for i, name in enumerate(classes)}
    unknown = [c for c in dataset.classes if c not in index]
    if unknown:
        raise HeadstartError(f"{dataset.root}: class {unknown[0]!r} is not one of the model's labels {classes}")
    samples = dataset.split(split)
    return LabelledImages(
        root=dataset.root,
        split=split if dataset.presplit else "all",
        paths=[s.path for s in samples],
        labels=np.array([index[dataset.classes[s.label]] for s in samples], dtype=np.int64),
        skipped={Path(s.path): s.reason for s in dataset.skipped},
    )
