"""Near-duplicate leakage between splits, and splitting by group."""

import shutil

import numpy as np
import pytest
from PIL import Image, ImageEnhance

import headstart
from headstart.data.dataset import capture_sessions, scan
from headstart.evaluation.leakage import join_groups, validation_pinned
from headstart.hparams import HParams
from headstart.training.run import TrainingRun

BASES_PER_CLASS, FRAMES = 6, 8


def burst(base: Image.Image, rng: np.random.Generator, n: int) -> list[Image.Image]:
    """Frames of one scene: each shifted by a few pixels, re-lit slightly, with sensor noise."""
    base = base.convert("RGB").resize((288, 288))
    frames = []
    for _ in range(n):
        dx, dy = rng.integers(0, 17, 2)
        frame = base.crop((dx, dy, dx + 272, dy + 272))
        frame = ImageEnhance.Brightness(frame).enhance(rng.uniform(0.95, 1.05))
        noisy = np.asarray(frame, np.float32) + rng.normal(0, 4, (272, 272, 3))
        frames.append(Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)))
    return frames


@pytest.fixture(scope="module")
def bursts(tmp_path_factory, hymenoptera):
    """Flat folder: 6 scenes x 8 frames per class, named <class><scene>-<frame>.png (as rock01-023.png)."""
    root = tmp_path_factory.mktemp("bursts") / "data"
    rng = np.random.default_rng(0)
    for cls in ("ants", "bees"):
        photos = sorted((hymenoptera / "train" / cls).glob("*.jpg"))[:BASES_PER_CLASS]
        (root / cls).mkdir(parents=True)
        for b, photo in enumerate(photos):
            for f, frame in enumerate(burst(Image.open(photo), rng, FRAMES)):
                frame.save(root / cls / f"{cls}{b:02d}-{f:03d}.png")
    return root


def cross_split_pairs(clf) -> list[tuple[str, str]]:
    return [(d.path, d.match) for d in clf.record.leakage.cross_split]


def test_random_split_of_bursts_is_flagged(bursts):
    clf = headstart.train(bursts, val_fraction=0.2, test_fraction=0.2)
    assert clf.record.leakage.likely
    n, total = clf.record.leakage.held_out_with_copy["val"]
    assert n == total  # every validation frame has a sibling frame in train
    assert "--group-by auto" in clf.record.leakage.message()


def test_group_by_auto_keeps_bursts_together(bursts):
    clf = headstart.train(bursts, val_fraction=0.2, test_fraction=0.2, group_by="auto")
    dataset_counts = clf.record.data.counts
    assert sum(dataset_counts["val"].values()) > 0 and sum(dataset_counts["test"].values()) > 0
    assert cross_split_pairs(clf) == []
    assert not clf.record.leakage.likely


def test_group_by_regex_keeps_named_groups_together(bursts):
    ds = scan(bursts, 0.2, 0.2, seed=1, group_by=r"^[a-z]+(\d+)-")
    split_of_scene = {}
    for s in ds.samples:
        scene = (s.label, s.path.name.split("-")[0])
        assert split_of_scene.setdefault(scene, s.split) == s.split, f"scene {scene} spans splits"
    assert {s.split for s in ds.samples} == {"train", "val", "test"}


def test_independent_split_is_not_flagged(bursts, tmp_path):
    """Whole scenes in val that train never saw: near-copies inside val, none across."""
    for path in bursts.rglob("*.png"):
        scene = int(path.name[len(path.parent.name) : len(path.parent.name) + 2])
        split = "val" if scene >= BASES_PER_CLASS - 2 else "train"
        (tmp_path / split / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, tmp_path / split / path.parent.name / path.name)
    clf = headstart.train(tmp_path)
    assert cross_split_pairs(clf) == [] and not clf.record.leakage.likely
    assert clf.record.leakage.within_split  # the bursts inside val are still reported as duplicates


def test_hymenoptera_is_quiet(hymenoptera):
    clf = headstart.train(hymenoptera)
    assert (
        clf.record.leakage.cross_split == [] and not clf.record.leakage.likely and clf.record.leakage.message() is None
    )


def test_planted_near_copies_in_val_are_named(hymenoptera, tmp_path):
    root = tmp_path / "hym"
    shutil.copytree(hymenoptera, root)
    sources = sorted((root / "train" / "bees").glob("*.jpg"))[10:13]
    planted = {}
    for i, src in enumerate(sources):
        image = Image.open(src).convert("RGB")
        w, h = image.size
        edit = [
            image.crop((int(w * 0.06), int(h * 0.06), int(w * 0.94), int(h * 0.94))),  # crop
            image.resize((w * 3 // 4, h * 3 // 4)),  # resize
            ImageEnhance.Brightness(image).enhance(1.2),  # re-lit
        ][i]
        target = root / "val" / "bees" / f"planted{i}.jpg"
        edit.save(target, quality=90)
        planted[str(target)] = str(src)
    clf = headstart.train(root)
    found = {d.path: d.match for d in clf.record.leakage.cross_split}
    assert found == planted


def test_exact_duplicates_are_reported(colour_folder):
    shutil.copy(colour_folder / "red" / "0.png", colour_folder / "red" / "copy-of-0.png")
    clf = headstart.train(colour_folder, val_fraction=0.2, test_fraction=0.2)
    groups = [sorted(p.rsplit("/", 1)[1] for p in g) for g in clf.record.leakage.exact_duplicates]
    assert groups == [["0.png", "copy-of-0.png"]]


def test_pinned_validation_accuracy_is_recognised():
    moving = {"val_accuracy": [0.9, 1.0, 1.0, 1.0, 1.0, 1.0], "train_loss": [0.9, 0.5, 0.3, 0.2, 0.1, 0.05]}
    honest = {"val_accuracy": [0.8, 0.85, 0.9, 0.9, 0.91, 0.9], "train_loss": [0.9, 0.5, 0.3, 0.2, 0.1, 0.05]}
    converged = {"val_accuracy": [1.0] * 6, "train_loss": [0.01] * 6}
    assert validation_pinned(moving) and not validation_pinned(honest) and not validation_pinned(converged)
    path = moving | {"l2": [10.0, 3.16, 1.0, 0.316, 0.1, 0.0316]}  # L2 path: strong penalties first, not epochs
    assert not validation_pinned(path)


def scan_holds(folder, holds: int, frames: int = 12):
    """Two classes of `holds` recordings of `frames` empty files each, scanned grouped by recording."""
    for cls in ("left", "right"):
        (folder / cls).mkdir()
        for session in range(holds):
            for frame in range(frames):
                (folder / cls / f"webcam-{cls}{session}-{frame}.jpg").write_bytes(b"")
    return scan(folder, 0.1, 0.1, seed=3, group_by=r"^webcam-(\w+)-")


def test_groups_larger_than_a_split_share_are_still_held_out(tmp_path):
    """Four holds of 12 frames per class: each hold is more than the 5 images a 10% split wants,
    yet every class gets one whole hold in test and one in validation (before: none held out)."""
    ds = scan_holds(tmp_path, holds=4)
    for split in ("test", "val"):
        held = ds.split(split)
        assert {ds.classes[s.label] for s in held} == {"left", "right"} and len(held) == 24, split
    sessions = {}
    for s in ds.samples:
        assert sessions.setdefault(s.path.name.split("-")[1], s.split) == s.split  # a hold is never split


def test_a_class_of_two_holds_keeps_both_for_training(tmp_path):
    ds = scan_holds(tmp_path, holds=2)
    assert {s.split for s in ds.samples} == {"train"}  # nothing to hold out that training could spare


def test_join_groups_merges_groups_that_share_a_session():
    groups = np.array([0, 1, 2, 3, 4])
    joined = join_groups(groups, ["a", None, "b", "a", "b"])
    assert joined[0] == joined[3] and joined[2] == joined[4] and len(set(joined)) == 3


def test_group_by_auto_keeps_each_studio_recording_in_one_split(hymenoptera, tmp_path):
    """Frames the studio recorded in one hold (webcam-<session>-<n>.jpg) stay together even when
    they do not look alike (the camera moved during the hold)."""
    project = tmp_path / "project"
    for c, cls in enumerate(("ants", "bees")):
        (project / cls).mkdir(parents=True)
        for i, photo in enumerate(sorted((hymenoptera / "train" / cls).glob("*.jpg"))[:40]):
            shutil.copy(photo, project / cls / f"webcam-{100 * c + i // 8}-{i % 8}.jpg")
    run = TrainingRun(project, HParams(group_by="auto"), out=tmp_path / "model", quiet=True)
    run.group()
    split_of = {}
    for s in run.dataset.samples:
        session = capture_sessions([s.path])[0]
        assert split_of.setdefault(session, s.split) == s.split, f"recording {session} spans splits"
    assert len(split_of) == 10 and {"train", "val", "test"} <= set(split_of.values())
