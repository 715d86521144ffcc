"""The report shows true numbers: checked against independent computations, not just existence."""

import base64
import csv
import io
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import precision_recall_fscore_support

import headstart


@pytest.fixture(scope="module")
def trained(small_hymenoptera, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "model"
    clf = headstart.train(small_hymenoptera, out=out)
    report = clf.report(out)
    return clf, out, report


def independent_predictions(clf, root):
    """Labels and predictions computed without the report code: predict() on the val images."""
    paths = sorted((root / "val").rglob("*.jpg"))
    truth = [p.parent.name for p in paths]
    predicted = [p.label for p in clf.predict(paths)]
    return truth, predicted


def test_per_class_csv_matches_sklearn(trained, small_hymenoptera):
    clf, out, _ = trained
    truth, predicted = independent_predictions(clf, small_hymenoptera)
    p, r, f, s = precision_recall_fscore_support(truth, predicted, labels=clf.classes, zero_division=0)
    rows = {row["class"]: row for row in csv.DictReader(open(out / "per_class.csv"))}
    for i, name in enumerate(clf.classes):
        assert float(rows[name]["precision"]) == pytest.approx(p[i], abs=1e-6)
        assert float(rows[name]["recall"]) == pytest.approx(r[i], abs=1e-6)
        assert float(rows[name]["f1"]) == pytest.approx(f[i], abs=1e-6)
        assert int(rows[name]["support"]) == s[i]
    assert float(rows["macro avg"]["f1"]) == pytest.approx(np.mean(f), abs=1e-6)
    assert float(rows["weighted avg"]["recall"]) == pytest.approx(np.average(r, weights=s), abs=1e-6)
    assert float(rows["accuracy"]["f1"]) == pytest.approx(np.mean(np.array(truth) == np.array(predicted)), abs=1e-6)


def test_report_html_is_self_contained_and_true(trained, small_hymenoptera):
    clf, out, report = trained
    page = report.path.read_text("utf-8")
    truth, predicted = independent_predictions(clf, small_hymenoptera)
    accuracy = np.mean(np.array(truth) == np.array(predicted))
    assert f"<span>{accuracy:.3f}</span>accuracy" in page
    _, _, f1, _ = precision_recall_fscore_support(truth, predicted, labels=clf.classes, zero_division=0)
    for name, value in zip(clf.classes, f1):
        assert re.search(rf"<td>{name}</td><td>[0-9.]+</td><td>[0-9.]+</td><td>{value:.3f}</td>", page)
    # Nothing is loaded from elsewhere: every image is inline, no links to files or hosts.
    assert not re.search(r'(src|href)="(?!data:)', page)
    pictures = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pictures) == 7
    for data in pictures:
        with Image.open(io.BytesIO(base64.b64decode(data))) as image:
            assert image.width >= 400 and image.height >= 200


def test_pngs_decode_with_sensible_sizes(trained):
    _, out, report = trained
    expected = {"curves", "confusion", "calibration", "mistakes", "embedding", "dataset", "samples"}
    assert expected <= set(report.files)
    for name in expected:
        with Image.open(out / f"{name}.png") as image:
            image.load()
            assert 400 <= image.width <= 4000 and 200 <= image.height <= 4000, (name, image.size)
            assert len(np.unique(np.asarray(image.convert("L")))) > 10  # not a blank canvas


def test_calibrated_model_keeps_its_temperature_everywhere(small_hymenoptera, tmp_path):
    clf = headstart.train(small_hymenoptera, out=tmp_path / "m", calibrate=True)
    assert clf.temperature != 1.0 and clf.record.calibration.temperature == clf.temperature
    reloaded = headstart.load(tmp_path / "m")
    assert reloaded.temperature == pytest.approx(clf.temperature)
    images = sorted((small_hymenoptera / "val").rglob("*.jpg"))[:4]
    assert [p.probability for p in reloaded.predict(images)] == pytest.approx(
        [p.probability for p in clf.predict(images)]
    )
    exported = reloaded.export("onnx", tmp_path / "m.onnx")  # verification compares with the calibrated model
    assert exported.verification["max_abs_diff"] <= 1e-4


def test_report_command_regenerates_on_other_data(trained, small_hymenoptera, tmp_path):
    from headstart.cli import main

    _, out, _ = trained
    assert main(["report", str(out), str(small_hymenoptera / "val"), "--out", str(tmp_path)]) == 0
    rows = {row["class"]: row for row in csv.DictReader(open(tmp_path / "per_class.csv"))}
    assert int(rows["ants"]["support"]) == 6 and int(rows["bees"]["support"]) == 6
    assert (tmp_path / "report.html").stat().st_size > 10_000


def test_a_folder_with_an_unknown_class_is_refused_by_evaluate_and_report(trained, small_hymenoptera, tmp_path):
    clf, _, _ = trained
    import shutil

    shutil.copytree(small_hymenoptera / "val", tmp_path / "data")
    shutil.copytree(tmp_path / "data" / "bees", tmp_path / "data" / "wasps")
    for call in (lambda: clf.evaluate(tmp_path / "data"), lambda: clf.report(tmp_path / "r", data=tmp_path / "data")):
        with pytest.raises(headstart.HeadstartError, match="class 'wasps' is not one of the model's labels"):
            call()


def test_a_model_reported_again_reads_its_figures_back_without_matplotlib(trained, tmp_path):
    import json
    import subprocess
    import sys

    clf, out, report = trained
    code = f"""
import json, sys, headstart
headstart.load({str(out)!r}).report({str(tmp_path / "again")!r})
print(json.dumps("matplotlib" in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) is False
    for name in ("curves", "confusion", "calibration", "mistakes", "embedding", "dataset", "samples"):
        assert (tmp_path / "again" / f"{name}.png").read_bytes() == (out / f"{name}.png").read_bytes(), name


def test_figures_are_keyed_by_what_they_show(tmp_path, monkeypatch):
    from headstart.evaluation.figure_cache import FigureSpec, content_key, file_stamps, prune, render

    (tmp_path / "a.png").write_bytes(b"png")
    monkeypatch.chdir(tmp_path)  # a folder named relatively (train) or absolutely (report): one key
    assert file_stamps([Path("a.png")]) == file_stamps([tmp_path / "a.png"]) != file_stamps([tmp_path / "b"])

    assert content_key([1, "a"]) != content_key(["1", "a"])
    assert content_key(np.zeros(4, np.float32)) != content_key(np.zeros(4, np.float64))
    assert content_key(np.zeros((2, 2))) != content_key(np.zeros(4))
    assert content_key({"a": 1, "b": 2}) == content_key({"b": 2, "a": 1})

    drawn = []

    def build(colour):
        drawn.append(colour)
        return Image.new("RGB", (8, 8), colour)

    red = render(FigureSpec("test-swatch", ["red"], lambda: build("red")))
    assert render(FigureSpec("test-swatch", ["red"], lambda: build("red"))) == red and drawn == ["red"]
    render(FigureSpec("test-swatch", ["blue"], lambda: build("blue")))
    assert drawn == ["red", "blue"]
    assert Image.open(io.BytesIO(red)).getpixel((0, 0)) == (255, 0, 0)

    folder = tmp_path / "figures"
    folder.mkdir()
    for i in range(4):
        (folder / f"f{i}.png").write_bytes(b"x" * 100)
        os.utime(folder / f"f{i}.png", ns=(i * 10**9, i * 10**9))
    os.utime(folder / "f0.png")  # used just now
    prune(folder, budget=250)
    assert sorted(p.name for p in folder.iterdir()) == ["f0.png", "f3.png"]  # the least recently used went


def test_the_sample_figure_shows_training_images_recorded_in_model_json(trained, small_hymenoptera):
    import json

    _, out, _ = trained
    samples = json.loads((out / "model.json").read_text())["data"]["samples"]
    assert set(samples) == {"ants", "bees"}
    for name, paths in samples.items():
        assert len(paths) == 6 and len(set(paths)) == 6
        assert all(p.startswith(f"train/{name}/") and (small_hymenoptera / p).is_file() for p in paths)


def test_retraining_the_same_model_draws_no_figure_again(trained, small_hymenoptera, tmp_path, monkeypatch):
    from headstart.evaluation import figure_cache

    clf, out, _ = trained
    again = headstart.train(small_hymenoptera)  # the same data and settings: the same model, other timings
    assert again.record.history.seconds != clf.record.history.seconds

    def draw(figure):
        raise AssertionError(f"{figure.name} drawn again")

    monkeypatch.setattr(figure_cache, "_draw", draw)
    report = again.report(tmp_path / "again")
    assert (tmp_path / "again" / "curves.png").read_bytes() == (out / "curves.png").read_bytes()
    assert report.path.is_file()
