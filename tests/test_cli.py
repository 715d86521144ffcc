"""End to end through the command line, on the real hymenoptera photos (official train/val split)."""

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import pytest

import headstart


def headstart_cli(*args, check=True):
    result = subprocess.run(
        [sys.executable, "-m", "headstart", *map(str, args)],
        capture_output=True,
        text=True,
        env=os.environ | {"COLUMNS": "200"},
    )
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture(scope="module")
def hymenoptera_with_corrupt_file(tmp_path_factory, hymenoptera):
    root = tmp_path_factory.mktemp("hym") / "hymenoptera"
    shutil.copytree(hymenoptera, root)
    good = next((root / "train" / "bees").glob("*.jpg")).read_bytes()
    (root / "train" / "bees" / "truncated.jpg").write_bytes(good[: len(good) // 3])
    return root


@pytest.fixture(scope="module")
def trained(hymenoptera_with_corrupt_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("model") / "hym"
    result = headstart_cli("train", hymenoptera_with_corrupt_file, "--out", out)
    return out, result


def test_train_reports_metrics_skips_and_where_the_model_is(trained, hymenoptera_with_corrupt_file):
    out, result = trained
    assert "Evaluation on the val split" in result.stdout and "Confusion matrix" in result.stdout
    assert f"Model saved to {out}" in result.stdout.replace("\n", "")
    assert "truncated.jpg" in result.stderr and "corrupt or truncated" in result.stderr
    meta = json.loads((out / "model.json").read_text())
    assert meta["metrics"]["accuracy"] >= 0.92, meta["metrics"]
    skipped = {os.path.basename(s["path"]): s["reason"] for s in meta["data"]["skipped"]}
    assert list(skipped) == ["truncated.jpg"]
    # The placeholder GIF that ships with the set decodes fine and is used.
    assert meta["data"]["counts"]["train"] == {"ants": 124, "bees": 121}


def test_evaluate_predict_and_reload_agree(trained, hymenoptera):
    out, _ = trained
    evaluation = headstart_cli("evaluate", out, hymenoptera)
    accuracy = json.loads((out / "model.json").read_text())["metrics"]["accuracy"]
    assert f"accuracy {accuracy:.3f}" in evaluation.stdout

    predicted = headstart_cli("predict", out, hymenoptera / "val", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(predicted.stdout)))
    assert list(rows[0]) == ["path", "label", "probability", "ants", "bees"]
    assert len(rows) == 153
    truth = ["ants" if "/ants/" in r["path"] else "bees" for r in rows]
    cli_accuracy = sum(r["label"] == t for r, t in zip(rows, truth)) / len(rows)
    assert cli_accuracy == pytest.approx(accuracy)

    reloaded = headstart.load(out).predict([r["path"] for r in rows])
    assert [p.label for p in reloaded] == [r["label"] for r in rows]
    assert [round(p.probability, 6) for p in reloaded] == [float(r["probability"]) for r in rows]


def test_predict_reports_unreadable_files_and_globs(trained, hymenoptera, tmp_path):
    out, _ = trained
    junk = tmp_path / "junk.jpg"
    junk.write_text("not an image")
    result = headstart_cli("predict", out, junk, str(hymenoptera / "val" / "ants" / "1*.jpg"), "--format", "jsonl")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines and all(line["label"] in ("ants", "bees") for line in lines)
    assert all(os.path.basename(line["path"]).startswith("1") for line in lines)
    assert "junk.jpg" in result.stderr and "not a recognised image format" in result.stderr


def test_user_errors_are_one_line_without_traceback(tmp_path):
    result = headstart_cli("train", tmp_path / "nowhere", check=False)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "no such folder" in result.stderr
    result = headstart_cli("predict", tmp_path, "x.jpg", check=False)
    assert result.returncode == 2 and "not a headstart model bundle" in result.stderr


def test_imagenet_shows_real_class_names(hymenoptera):
    bee = sorted((hymenoptera / "val" / "bees").glob("*.jpg"))[0]
    result = headstart_cli("imagenet", bee)
    assert "bee" in result.stdout and "%" in result.stdout


def test_backbones_lists_all_with_weights_status():
    result = headstart_cli("backbones")
    assert "mobilenet_v2 (default)" in result.stdout and "efficientnet_lite0" in result.stdout
    assert result.stdout.count("yes") == 4  # the weights of all four are installed by make


def test_demo_runs_on_a_folder(small_hymenoptera):
    result = headstart_cli("demo", "--data", small_hymenoptera)
    assert "predictions identical to the trained model: yes" in result.stdout


def test_every_command_has_help():
    for command in ("train", "evaluate", "predict", "export", "imagenet", "backbones", "demo"):
        assert "usage: headstart" in headstart_cli(command, "--help").stdout


def test_export_then_predict_with_the_onnx_file(trained, hymenoptera, tmp_path):
    out, _ = trained
    result = headstart_cli("export", out, "--format", "onnx", "--out", tmp_path / "hym.onnx")
    assert "top-1 agreement 100.0%" in result.stdout.replace("\n", "")
    bees = hymenoptera / "val" / "bees"
    from_onnx = headstart_cli("predict", tmp_path / "hym.onnx", bees, "--format", "csv").stdout
    from_bundle = headstart_cli("predict", out, bees, "--format", "csv").stdout
    labels = lambda text: [row["label"] for row in csv.DictReader(io.StringIO(text))]  # noqa: E731
    assert labels(from_onnx) == labels(from_bundle) and len(labels(from_onnx)) == 83


def test_class_imbalance_is_reported_with_the_fix(tmp_path):
    from .helpers import make_image

    for i in range(30):
        make_image(tmp_path / "data" / "common" / f"{i}.png", (200, 30, 30), seed=i)
    for i in range(6):
        make_image(tmp_path / "data" / "rare" / f"{i}.png", (30, 30, 200), seed=100 + i)
    plain = headstart_cli("train", tmp_path / "data", "--out", tmp_path / "a", "--no-report")
    assert "imbalanced" in plain.stderr and "--class-weights auto" in plain.stderr
    balanced = headstart_cli(
        "train", tmp_path / "data", "--out", tmp_path / "b", "--no-report", "--class-weights", "auto"
    )
    assert "imbalanced" not in balanced.stderr
    assert json.loads((tmp_path / "b" / "model.json").read_text())["hparams"]["class_weights"] == "auto"


def test_output_piped_into_head_is_not_an_error(trained, hymenoptera):
    out, _ = trained
    command = [sys.executable, "-m", "headstart", "predict", str(out), str(hymenoptera / "val"), "--format", "csv"]
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert run.stdout.readline().startswith("path,label,probability")
    run.stdout.close()  # what `| head -1` does
    assert run.wait(timeout=120) == 0
    assert "Traceback" not in run.stderr.read()
