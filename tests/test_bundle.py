import json
import os

import pytest

import headstart
from headstart.bundle import integrity, load_bundle
from headstart.errors import HeadstartError


@pytest.fixture(scope="module")
def trained(small_hymenoptera, tmp_path_factory):
    out = tmp_path_factory.mktemp("bundles") / "model"
    clf = headstart.train(small_hymenoptera, out=out, hidden=(16,))
    return clf, out


def test_round_trip_gives_identical_predictions(trained, small_hymenoptera):
    clf, out = trained
    assert sorted(p.name for p in out.iterdir()) == ["model.json", "model.safetensors"]
    reloaded = headstart.load(out)
    images = sorted((small_hymenoptera / "val").rglob("*.jpg"))
    a, b = clf.predict(images), reloaded.predict(images)
    assert [p.probabilities for p in a] == [p.probabilities for p in b]
    assert reloaded.classes == ["ants", "bees"] and reloaded.hparams.hidden == (16,)
    assert reloaded.metrics.accuracy == clf.metrics.accuracy


def test_metadata_records_what_a_user_needs(trained):
    _, out = trained
    meta = json.loads((out / "model.json").read_text())
    assert meta["labels"] == ["ants", "bees"]
    assert meta["backbone"]["weights_sha256"].startswith("b0353104")
    assert meta["preprocessing"]["image_size"] == 224 and meta["preprocessing"]["mean"][0] == pytest.approx(0.485)
    assert meta["hparams"]["hidden"] == [16]
    assert meta["data"]["counts"]["train"] == {"ants": 12, "bees": 12}
    assert 0 <= meta["metrics"]["accuracy"] <= 1 and meta["evaluated_on"] == "val"
    assert meta["environment"]["torch"].startswith("2.13")


def copy_bundle(src, dst):
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def test_tampered_weights_are_refused(trained, tmp_path):
    bad = copy_bundle(trained[1], tmp_path / "bad")
    blob = bytearray((bad / "model.safetensors").read_bytes())
    blob[-3] ^= 0xFF
    (bad / "model.safetensors").write_bytes(bytes(blob))
    with pytest.raises(HeadstartError, match="sha256 does not match model.json"):
        headstart.load(bad)


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m["labels"].reverse(),  # swapped: every prediction would be inverted
        lambda m: m["labels"].append("wasps"),
        lambda m: m["preprocessing"].update(image_size=192),
        lambda m: m["calibration"].update(temperature=2.0),
        lambda m: m["head"].update(dropout=0.5),
    ],
    ids=["swapped-labels", "extra-label", "crop", "temperature", "head"],
)
def test_edits_to_what_decides_predictions_are_refused(trained, tmp_path, edit):
    bad = copy_bundle(trained[1], tmp_path / "bad")
    meta = json.loads((bad / "model.json").read_text())
    edit(meta)
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(HeadstartError, match="integrity hash does not match"):
        headstart.load(bad)


def test_labels_that_do_not_fit_the_weights_are_refused_even_with_a_recomputed_hash(trained, tmp_path):
    bad = copy_bundle(trained[1], tmp_path / "bad")
    meta = json.loads((bad / "model.json").read_text())
    meta["labels"].append("wasps")
    meta["integrity"] = integrity(meta)
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(HeadstartError, match="does not match model.json"):
        headstart.load(bad)


def test_other_backbone_weights_are_refused(trained, tmp_path):
    bad = copy_bundle(trained[1], tmp_path / "bad")
    meta = json.loads((bad / "model.json").read_text())
    meta["backbone"]["weights_sha256"] = "0" * 64
    meta["integrity"] = integrity(meta)
    (bad / "model.json").write_text(json.dumps(meta))
    with pytest.raises(HeadstartError, match="trained on other mobilenet_v2 weights"):
        headstart.load(bad)


def test_not_a_bundle(tmp_path):
    with pytest.raises(HeadstartError, match="no such model bundle"):
        headstart.load(tmp_path / "missing")
    with pytest.raises(HeadstartError, match="not a headstart model bundle"):
        headstart.load(tmp_path)
    (tmp_path / "model.json").write_text("{ not json")
    with pytest.raises(HeadstartError, match="corrupt JSON"):
        load_bundle(tmp_path)


@pytest.mark.parametrize("swap", ["exchange", "two renames"])
def test_a_crash_while_saving_keeps_the_old_bundle(trained, tmp_path, monkeypatch, swap):
    import headstart.fsutil as fsutil

    clf, out = trained
    target = copy_bundle(out, tmp_path / "model")
    before = (target / "model.json").read_bytes()
    real_replace = os.replace

    def crash_on_swap(src, dst):
        if str(dst) == str(target):
            raise OSError("simulated power cut")
        return real_replace(src, dst)

    def crash_on_exchange(a, b):
        raise OSError("simulated power cut")

    monkeypatch.setattr(os, "replace", crash_on_swap)
    monkeypatch.setattr(fsutil, "exchange", crash_on_exchange if swap == "exchange" else lambda a, b: False)
    with pytest.raises(OSError, match="power cut"):
        clf.save(target)
    monkeypatch.undo()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    # The old bundle was never half-written, and loading puts it back where a crash moved it aside.
    headstart.load(target)
    assert (target / "model.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_saving_over_a_foreign_folder_is_refused(trained, tmp_path):
    (tmp_path / "precious.txt").write_text("do not delete")
    with pytest.raises(HeadstartError, match="not a headstart model bundle"):
        trained[0].save(tmp_path)
    assert (tmp_path / "precious.txt").exists()
