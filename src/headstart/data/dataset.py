"""Scan a folder of images into labelled samples with train/val/test splits.

Layouts: `DATA/<class>/*` (split here: stratified, seeded) or pre-split
`DATA/{train,val,test}/<class>/*` (`valid`/`validation` accepted for val).
"""

from __future__ import annotations

import os
import random
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import HeadstartError
from ..events import EventBus, StageProgress, as_bus
from .images import is_image_path, not_a_regular_file, walk_files

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
IMBALANCE_RATIO = 3.0  # largest/smallest class in train at which we warn
# The studio names the frames of one hold of its record button webcam-<session>-<frame>.jpg: near-copies
# of one another, they are one group wherever images are grouped ("auto").
CAPTURE_SESSION = re.compile(r"^webcam-(\d+)-\d+\.")


@dataclass(frozen=True)
class Sample:
    """One image: its path, class index and split."""

    path: Path
    label: int
    split: str


@dataclass(frozen=True)
class Skipped:
    """A file left out, and why."""

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
    fractions: dict[str, float] = field(default_factory=dict)  # how the held-out splits were drawn
    seed: int = 42
    notes: dict[str, str] = field(default_factory=dict)  # path -> what its decoder warned about (still used)

    def split(self, name: str) -> list[Sample]:
        """The samples of one split (train, val or test)."""
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
        """Largest over smallest class in train (1.0 when balanced)."""
        counts = [n for n in self.counts().get("train", {}).values()]
        return max(counts) / max(min(counts), 1) if counts else 1.0

    def regroup(self, groups: dict[Path, object]) -> None:
        """Redraw the held-out splits so that every group lands wholly in one split.

        Only for folders split here: a pre-split folder's split is the user's and is kept.
        """
        if self.presplit:
            return
        pooled = [Sample(s.path, s.label, "train") for s in self.samples]
        self.samples = _assign(pooled, self.fractions, self.seed, "train", groups)
        self.validate()

    def drop(self, failures: dict[Path, str]) -> None:
        """Remove samples that turned out to be unreadable, recording why."""
        if not failures:
            return
        self.samples = [s for s in self.samples if s.path not in failures]
        self.skipped += [Skipped(str(p), r) for p, r in failures.items()]
        self.validate()

    def note(self, notes: dict[Path, str]) -> None:
        """Record what the decoder warned about for files that are still used."""
        kept = {s.path for s in self.samples}
        self.notes |= {str(p): note for p, note in notes.items() if p in kept}

    def validate(self) -> None:
        """A one-line error unless there are 2 classes or more, each with a training image."""
        train = Counter(s.label for s in self.split("train"))
        empty = [name for i, name in enumerate(self.classes) if train.get(i, 0) == 0]
        if empty:
            raise HeadstartError(f"{self.root}: class {empty[0]!r} has no usable training image")
        if len(self.classes) < 2:
            raise HeadstartError(
                f"{self.root}: need at least 2 classes (one sub-folder each), found {len(self.classes)}"
            )


def capture_sessions(paths: list[Path]) -> list[str | None]:
    """The studio recording session of each file named by its recorder, else None."""
    return [m.group(1) if (m := CAPTURE_SESSION.match(p.name)) else None for p in paths]


def require_unchanged(paths: list[Path], ok: list[int]) -> None:
    """Stop with a sentence when images a run read at its start are gone or unreadable now (a class
    deleted or images moved while it ran): reading on would pair images with the wrong labels."""
    if len(ok) == len(paths):
        return
    missing = sorted(set(range(len(paths))) - set(ok))
    more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
    raise HeadstartError(
        f"{paths[missing[0]]}{more}: gone or unreadable since this run started (deleted or moved while it "
        "ran?); the run stopped: train again on the images there now"
    )


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and os.path.isdir(p))


def split_folders(root: Path) -> dict[str, Path]:
    """The split folders of a pre-split dataset (`train/`, `val/` or `valid/`..., `test/`) by split
    name; none (empty) when `root` is laid out `<class>/<image>`, i.e. has no train folder."""
    subdirs = {SPLIT_ALIASES.get(p.name.lower()): p for p in _class_dirs(root)}
    subdirs.pop(None, None)
    return subdirs if "train" in subdirs else {}


def _files(class_dir: Path, skipped: list[Skipped], progress: StageProgress | None = None) -> list[Path]:
    """Image files below a class folder (recursively), hidden ones ignored, the rest recorded with
    the reason: other file types, pipes, sockets, devices, links to folders, folders that cannot be
    listed. None of those is opened."""
    out = []
    unreadable: dict[Path, str] = {}
    for p in walk_files(class_dir, unreadable):
        if progress is not None:
            progress.advance()
        if (why := not_a_regular_file(p)) is not None:
            skipped.append(Skipped(str(p), why))
        elif is_image_path(p):
            out.append(p)  # broken or looping links too: reading them reports why
        else:
            skipped.append(Skipped(str(p), f"not an image file type ({p.suffix or 'no extension'})"))
    skipped += [Skipped(str(p), why) for p, why in unreadable.items()]
    return out


def scan(
    root: str | Path,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 42,
    group_by: str | None = None,
    events: EventBus | None = None,
) -> Dataset:
    """Find classes and images under `root` and assign every image to a split.

    `group_by` is a regular expression searched in each file name: files with the same capture
    (group 1, else the whole match) stay in one split. "auto" groups are made later, from features
    (see `Dataset.regroup`); here they split like no grouping.
    """
    pattern = _compile_group_pattern(group_by)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise HeadstartError(f"{root}: no such folder")
    with as_bus(events).stage("scan", unit="files", description=f"Scanning {root.name}") as progress:
        return _scan(root, val_fraction, test_fraction, seed, pattern, progress)


def _scan(
    root: Path, val_fraction: float, test_fraction: float, seed: int, pattern, progress: StageProgress
) -> Dataset:
    subdirs = split_folders(root)
    skipped: list[Skipped] = []
    if subdirs:
        classes = [p.name for p in _class_dirs(subdirs["train"])]
        index = {name: i for i, name in enumerate(classes)}
        samples = []
        for split, folder in subdirs.items():
            for class_dir in _class_dirs(folder):
                if class_dir.name not in index:
                    raise HeadstartError(f"{class_dir}: class {class_dir.name!r} is not in {subdirs['train']}")
                samples += [Sample(p, index[class_dir.name], split) for p in _files(class_dir, skipped, progress)]
        if "val" not in subdirs:  # carve validation out of train, stratified
            samples = _assign(samples, {"val": val_fraction}, seed, "train", _name_groups(samples, pattern))
        dataset = Dataset(root, classes, samples, skipped, presplit=True)
    else:
        class_dirs = _class_dirs(root)
        classes = [p.name for p in class_dirs]
        samples = [Sample(p, i, "train") for i, d in enumerate(class_dirs) for p in _files(d, skipped, progress)]
        samples = _assign(
            samples, {"test": test_fraction, "val": val_fraction}, seed, "train", _name_groups(samples, pattern)
        )
        dataset = Dataset(
            root, classes, samples, skipped, fractions={"test": test_fraction, "val": val_fraction}, seed=seed
        )
    if not dataset.samples:
        raise HeadstartError(
            f"{root}: no images found (expected {root}/<class>/<image> or {root}/train/<class>/<image>)"
        )
    dataset.validate()
    return dataset


def _compile_group_pattern(group_by: str | None) -> re.Pattern | None:
    if group_by in (None, "", "auto"):
        return None
    try:
        return re.compile(group_by)
    except re.error as e:
        raise HeadstartError(f"--group-by {group_by!r} is not a valid regular expression ({e})") from None


def _name_groups(samples: list[Sample], pattern: re.Pattern | None) -> dict[Path, str] | None:
    """Group key per file from its name; files the pattern does not match are groups of their own."""
    if pattern is None:
        return None
    groups = {}
    for s in samples:
        m = pattern.search(s.path.name)
        groups[s.path] = (m.group(1) if m.groups() else m.group(0)) if m else f"\0{s.path}"
    return groups


def _assign(
    samples: list[Sample], fractions: dict[str, float], seed: int, only: str, groups: dict[Path, object] | None = None
) -> list[Sample]:
    """Move a seeded, per-class random share of the `only` split into the splits in `fractions`,
    keeping each group (if given) whole."""
    for name, frac in fractions.items():
        if not 0 <= frac < 1:
            raise HeadstartError(f"{name} fraction must be in [0, 1), got {frac}")
    if sum(fractions.values()) >= 1:
        raise HeadstartError("validation and test fractions leave no training images")
    rng = random.Random(seed)
    pool = sorted((s for s in samples if s.split == only), key=lambda s: str(s.path))
    moved = (
        _assign_groups(pool, fractions, rng, groups) if groups is not None else _assign_samples(pool, fractions, rng)
    )
    return [Sample(s.path, s.label, moved.get(s.path, s.split)) for s in samples]


def _assign_samples(pool: list[Sample], fractions: dict[str, float], rng: random.Random) -> dict[Path, str]:
    by_class: dict[int, list[Sample]] = {}
    for s in pool:
        by_class.setdefault(s.label, []).append(s)
    moved: dict[Path, str] = {}
    for label in sorted(by_class):
        group = by_class[label]
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
    return moved


def _assign_groups(
    pool: list[Sample], fractions: dict[str, float], rng: random.Random, groups: dict[Path, object]
) -> dict[Path, str]:
    """Whole groups, in seeded random order, go to the held-out split that still needs most of
    their classes; the rest stay in training. Stratified as far as the groups allow."""
    members: dict[str, list[Sample]] = {}
    for s in pool:
        members.setdefault(str(groups.get(s.path, f"\0{s.path}")), []).append(s)
    per_class = Counter(s.label for s in pool)
    need = {name: {c: round(n * frac) for c, n in per_class.items()} for name, frac in fractions.items()}
    order = sorted(members)
    rng.shuffle(order)
    moved: dict[Path, str] = {}
    for key in order:
        group = members[key]
        composition = Counter(s.label for s in group)
        wanted = {name: sum(min(k, need[name][c]) for c, k in composition.items()) for name in fractions}
        best = max(wanted, key=wanted.get, default=None)
        if best is not None and wanted[best] > 0 and 2 * wanted[best] >= len(group):
            for s in group:
                moved[s.path] = best
            for c, k in composition.items():
                need[best][c] -= k
    # Groups larger than a split's share (a webcam hold of 10 frames, where 3 are wanted) fit nowhere
    # above. As for single images, a class with three groups or more still gets one held out per split:
    # its smallest, so that every class is measured on a capture its model never saw.
    taken = {key for key in order if members[key][0].path in moved}
    for name, frac in fractions.items():
        held = {s.label for key in taken for s in members[key] if moved[s.path] == name}
        for label in sorted(per_class.keys() - held) if frac > 0 else ():
            left = [key for key in order if key not in taken and any(s.label == label for s in members[key])]
            own = [key for key in left if all(s.label == label for s in members[key])]
            if len(left) >= 3 and own:
                key = min(own, key=lambda k: len(members[k]))
                moved |= {s.path: name for s in members[key]}
                taken.add(key)
    return moved
