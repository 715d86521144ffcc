"""One Predictor interface: a bundle and its exported ONNX file load the same way and agree."""

import numpy as np
import pytest

import headstart
from headstart.inference.exported import ExportedModel
from headstart.inference.predictor import Predictions, Predictor


@pytest.fixture(scope="module")
def bundle_and_onnx(small_hymenoptera, tmp_path_factory):
    root = tmp_path_factory.mktemp("predictor")
    headstart.train(small_hymenoptera, out=root / "bundle", quiet=True).export("onnx", root / "model.onnx")
    return root / "bundle", root / "model.onnx"


def test_load_returns_a_predictor_for_a_bundle_and_for_an_onnx_file(bundle_and_onnx, hymenoptera):
    bundle, onnx = (headstart.load(p) for p in bundle_and_onnx)
    assert isinstance(bundle, headstart.Classifier) and isinstance(onnx, ExportedModel)
    assert isinstance(bundle, Predictor) and isinstance(onnx, Predictor)
    assert bundle.classes == onnx.classes == ["ants", "bees"]
    images = hymenoptera / "val"  # 153 photos neither model trained on
    a, b = bundle.predict(images), onnx.predict(images)
    assert len(a) == len(b) == 153 and a.labels == b.labels
    pa = np.array([[p.probabilities[c] for c in a.classes] for p in a])
    pb = np.array([[p.probabilities[c] for c in b.classes] for p in b])
    assert np.abs(pa - pb).max() < 1e-4


def test_predict_arrays_is_what_predict_runs(bundle_and_onnx, small_hymenoptera):
    from headstart.data.images import load_image

    predictor = headstart.load(bundle_and_onnx[1])
    paths = sorted((small_hymenoptera / "val" / "bees").iterdir())[:3]
    crops = np.stack([predictor.preprocessing(load_image(p)) for p in paths])
    direct = predictor.predict_arrays(crops)
    via_files = predictor.predict(paths)
    np.testing.assert_allclose(direct.max(1), [p.probability for p in via_files], atol=1e-6)


def test_unreadable_and_missing_inputs_are_reported(bundle_and_onnx, small_hymenoptera, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    result = headstart.load(bundle_and_onnx[0]).predict([tmp_path / "broken.jpg", tmp_path / "missing.jpg"])
    assert isinstance(result, Predictions) and len(result) == 0
    assert set(result.failures) == {tmp_path / "broken.jpg", tmp_path / "missing.jpg"}
    assert result.failures[tmp_path / "missing.jpg"] == "no such file or folder"
