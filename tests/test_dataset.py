import pytest

from headstart.data.dataset import scan
from headstart.errors import HeadstartError

from .helpers import make_image


def test_flat_folder_is_split_stratified_and_seeded(colour_folder):
    a = scan(colour_folder, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert a.classes == ["blue", "green", "red"]
    for split, expected in (("train", 6), ("val", 2), ("test", 2)):
        assert a.counts()[split] == {"blue": expected, "green": expected, "red": expected}
    again = scan(colour_folder, val_fraction=0.2, test_fraction=0.2, seed=1)
    assert [(s.path, s.split) for s in a.samples] == [(s.path, s.split) for s in again.samples]
    other = scan(colour_folder, val_fraction=0.2, test_fraction=0.2, seed=2)
    assert {s.path for s in a.split("val")} != {s.path for s in other.split("val")}


def test_presplit_folder_accepts_valid_alias_and_keeps_its_split(tmp_path):
    for split, n in (("train", 4), ("valid", 2), ("test", 3)):
        for cls in ("cat", "dog"):
            for i in range(n):
                make_image(tmp_path / split / cls / f"{i}.jpg", seed=hash((split, cls, i)) % 1000)
    ds = scan(tmp_path)
    assert ds.presplit
    assert {k: sum(v.values()) for k, v in ds.counts().items()} == {"train": 8, "val": 4, "test": 6}


def test_presplit_without_val_carves_it_from_train(tmp_path):
    for split, n in (("train", 10), ("test", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                make_image(tmp_path / split / cls / f"{i}.png", seed=i + 50 * (cls == "b") + 500 * (split == "test"))
    ds = scan(tmp_path, val_fraction=0.2)
    assert ds.counts()["val"] == {"a": 2, "b": 2} and ds.counts()["test"] == {"a": 2, "b": 2}


def test_odd_names_hidden_files_and_non_images(tmp_path):
    for i in range(3):
        make_image(tmp_path / "not alpaca" / f"{i}.png", seed=i)
        make_image(tmp_path / "café ☕" / f"{i}.png", seed=10 + i)
    (tmp_path / "not alpaca" / ".DS_Store").write_bytes(b"\0\0")
    (tmp_path / ".hidden_class").mkdir()
    (tmp_path / "café ☕" / "notes.txt").write_text("hello")
    ds = scan(tmp_path, val_fraction=0, test_fraction=0)
    assert ds.classes == ["café ☕", "not alpaca"]
    assert len(ds.samples) == 6
    assert [(s.path.endswith("notes.txt"), "not an image" in s.reason) for s in ds.skipped] == [(True, True)]


def test_under_two_classes_is_an_error(tmp_path):
    for i in range(3):
        make_image(tmp_path / "only" / f"{i}.png", seed=i)
    with pytest.raises(HeadstartError, match="at least 2 classes"):
        scan(tmp_path)


def test_class_without_images_is_an_error(tmp_path):
    for i in range(3):
        make_image(tmp_path / "full" / f"{i}.png", seed=i)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("nothing here")
    with pytest.raises(HeadstartError, match="'empty' has no usable training image"):
        scan(tmp_path)


def test_val_class_unknown_to_train_is_an_error(tmp_path):
    make_image(tmp_path / "train" / "a" / "0.png")
    make_image(tmp_path / "train" / "b" / "0.png", seed=1)
    make_image(tmp_path / "val" / "c" / "0.png", seed=2)
    with pytest.raises(HeadstartError, match="class 'c' is not in"):
        scan(tmp_path)


def test_missing_folder_is_an_error(tmp_path):
    with pytest.raises(HeadstartError, match="no such folder"):
        scan(tmp_path / "nope")
