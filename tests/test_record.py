"""The training record: typed in code, model.json's schema on disk, and back without loss."""

import json

import pytest

import headstart
from headstart.evaluation.record import History, TrainingRecord

MODEL_JSON_FIELDS = {
    "data",
    "leakage",
    "history",
    "stages",
    "evaluated_on",
    "metrics",
    "calibration",
    "splits",
    "timings",
    "created",
    "hparams",
    "environment",
}


@pytest.fixture(scope="module")
def saved(small_hymenoptera, tmp_path_factory):
    out = tmp_path_factory.mktemp("record") / "m"
    clf = headstart.train(small_hymenoptera, out=out, calibrate=True, quiet=True)
    return clf, json.loads((out / "model.json").read_text())


def test_model_json_keeps_its_schema(saved):
    clf, meta = saved
    assert MODEL_JSON_FIELDS <= set(meta)
    assert meta["stages"]["head"]["history"] == meta["history"] and "fine_tune" not in meta["stages"]
    assert set(meta["calibration"]) == {"temperature", "ece", "ece_uncalibrated"}
    assert meta["leakage"]["message"] is None and meta["data"]["held_out"]["val"][0][1] in ("ants", "bees")
    assert meta["metrics"] == meta["splits"][meta["evaluated_on"]]


def test_reading_model_json_gives_back_the_same_record(saved):
    clf, meta = saved
    record = TrainingRecord.from_dict(meta, clf.classes)
    assert record.to_dict() == {k: meta[k] for k in record.to_dict()}
    assert record.metrics == clf.metrics and record.history == clf.record.history
    assert record.calibration.temperature == clf.temperature != 1.0
    assert record.skipped == {} and record.data.counts["train"] == {"ants": 12, "bees": 12}


def test_history_reports_the_kept_weights_accuracy():
    h = History(val_loss=[0.6, 0.3, 0.4], val_accuracy=[0.5, 0.9, 0.8], best_epoch=2)
    assert h.best_val_accuracy == 0.9
    assert History(start_val_accuracy=0.7).best_val_accuracy == 0.7  # stage 2 kept stage 1
    h.add_epoch(0.3, 0.9, 0.25, 0.95, 1.23456)
    assert h.latest() == {
        "epoch": 4,
        "train_loss": 0.3,
        "train_accuracy": 0.9,
        "val_loss": 0.25,
        "val_accuracy": 0.95,
        "best_epoch": 2,
    }
    assert h.epoch_seconds == [1.235] and History.from_dict(h.to_dict()) == h
