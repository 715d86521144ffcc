"""Flip test-time augmentation: features of an image and its mirror image averaged, in the cache,
the graph, the bundle and every export; off unless asked, refused where left and right matter."""

import json

import numpy as np
import pytest
from PIL import Image, ImageOps

import headstart
from headstart.backbones import get_backbone
from headstart.errors import HeadstartError
from headstart.hparams import HParams
from headstart.inference.features import feature_extractor
from headstart.inference.pipeline import load_crops
from tests.test_cli import headstart_cli


def test_flip_features_are_the_mean_of_both_views_and_mirror_invariant(hymenoptera, tmp_path):
    paths = sorted((hymenoptera / "val" / "bees").glob("*.jpg"))[:5]
    spec = get_backbone("mobilenet_v2")
    plain = feature_extractor(spec, cache_dir=tmp_path).extract(paths)
    flip = feature_extractor(spec, cache_dir=tmp_path, tta="flip")
    averaged = flip.extract(paths)
    assert averaged.computed == 5  # the plain views came from the cache; the mirror views are new
    mirrored = flip.cache("-flip")
    np.testing.assert_allclose(
        averaged.features[0], (plain.features[0] + mirrored.get(averaged.hashes[0])) / 2, atol=1e-6
    )
    assert np.abs(averaged.features - plain.features).max() > 1e-2  # the mirror view really differs
    # The graph computes the same thing from the crop alone, and cannot tell an image from its mirror.
    crops, _ = load_crops(paths, flip.preprocessing)
    np.testing.assert_allclose(flip.embed(crops), averaged.features, atol=1e-4)
    np.testing.assert_allclose(flip.embed(np.ascontiguousarray(crops[:, :, ::-1])), averaged.features, atol=1e-4)


def test_tta_flip_model_round_trips_and_exports(small_hymenoptera, tmp_path):
    out = tmp_path / "model"
    headstart_cli("train", small_hymenoptera, "--tta", "flip", "--out", out, "--no-report")
    assert json.loads((out / "model.json").read_text())["test_time_augmentation"] == "flip"
    clf = headstart.load(out)
    assert clf.tta == "flip" and clf.hparams.tta == "flip"
    image = sorted((small_hymenoptera / "val" / "ants").glob("*.jpg"))[0]
    mirror = tmp_path / "mirror.png"
    ImageOps.mirror(Image.open(image).convert("RGB")).save(mirror)
    original, flipped = clf.predict([image, mirror])
    assert original.probability == pytest.approx(flipped.probability, abs=1e-3)  # mirror-invariant predictions
    result = clf.export("onnx", tmp_path / "m.onnx")
    assert result.verification["top1_agreement"] == 1.0 and result.verification["max_abs_diff"] <= 1e-4
    sidecar = json.loads(result.path.with_name("m.onnx.json").read_text())
    assert sidecar["test_time_augmentation"] == "flip"
    plain = headstart.load(out, engine="torch")  # same bundle, eager PyTorch: same probabilities
    np.testing.assert_allclose([p.probability for p in plain.predict([image])], [original.probability], atol=1e-4)


def test_tta_is_off_by_default_and_refused_with_no_flip():
    assert HParams().tta == "none"
    with pytest.raises(HeadstartError, match="--no-flip says left and right matter"):
        HParams(tta="flip", flip=False)
    with pytest.raises(HeadstartError, match="invalid tta"):
        HParams(tta="crops")
