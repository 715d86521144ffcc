"""Feature ensembles: one crop, every member's features side by side, each member cached apart;
trained, saved, reloaded and exported like a single backbone, never fine-tuned."""

import json
from pathlib import Path

import numpy as np
import pytest

import headstart
from headstart.backbones import EnsembleSpec, get_backbone
from headstart.errors import HeadstartError
from headstart.inference.features import EnsembleExtractor, feature_extractor
from headstart.inference.pipeline import load_crops
from tests.test_cli import headstart_cli

PAIR = "mobilenet_v2+efficientnet_lite1"  # different sizes (224, 240) and normalisations


def test_ensemble_spec_takes_the_largest_crop_and_adds_up_features():
    spec = get_backbone(PAIR)
    mnv2, lite1 = get_backbone("mobilenet_v2"), get_backbone("efficientnet_lite1")
    assert isinstance(spec, EnsembleSpec) and spec is get_backbone(PAIR)  # one object per name
    assert spec.feature_dim == mnv2.feature_dim + lite1.feature_dim
    assert spec.preprocessing.image_size == 240 and spec.preprocessing.resize_short == 272
    assert spec.preprocessing.mean == (0, 0, 0) and spec.preprocessing.std == (1, 1, 1)  # members normalise
    assert spec.weights.sha256 != get_backbone("efficientnet_lite1+mobilenet_v2").weights.sha256  # order matters
    with pytest.raises(HeadstartError, match="lists a member twice"):
        get_backbone("mobilenet_v2+mobilenet_v2")
    with pytest.raises(HeadstartError, match="unknown backbone 'resnet'"):
        get_backbone("mobilenet_v2+resnet")
    with pytest.raises(HeadstartError, match="each member loads its installed weights"):
        spec.weights_path("/some/file.pth")


def test_members_are_cached_apart_and_the_graph_matches_them(hymenoptera, tmp_path):
    paths = sorted((hymenoptera / "val" / "ants").glob("*.jpg"))[:6]
    extractor = feature_extractor(get_backbone(PAIR), cache_dir=tmp_path)
    assert isinstance(extractor, EnsembleExtractor)
    extraction = extractor.extract(paths)
    assert extraction.features.shape == (6, 2560) and extraction.computed == 6
    # One cache per member, each row holding that member's share of the features.
    member_caches = [m.cache() for m in extractor.members]
    assert len({c.dir for c in member_caches}) == 2
    for cache, columns in zip(member_caches, (slice(0, 1280), slice(1280, 2560))):
        np.testing.assert_array_equal(cache.get(extraction.hashes[0]), extraction.features[0, columns])
    # The whole ensemble as one graph (what predictions and exports run) gives the same features.
    crops, _ = load_crops(paths, extractor.preprocessing)
    np.testing.assert_allclose(extractor.embed(crops), extraction.features, atol=1e-4)
    torch_extractor = feature_extractor(get_backbone(PAIR), engine="torch", cache_dir=tmp_path)
    np.testing.assert_allclose(torch_extractor.embed(crops), extraction.features, atol=1e-4)
    # A second extraction reads both members from their caches.
    assert feature_extractor(get_backbone(PAIR), cache_dir=tmp_path).extract(paths).computed == 0
    # The member that needs no resize sees exactly what it would alone, on the same crop geometry.
    alone = feature_extractor(get_backbone("efficientnet_lite1"), cache_dir=tmp_path).extract(paths).features
    np.testing.assert_allclose(extraction.features[:, 1280:], alone, atol=1e-4)


@pytest.fixture(scope="module")
def ensemble_model(small_hymenoptera, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ensemble") / "model"
    headstart_cli("train", small_hymenoptera, "--backbone", PAIR, "--out", out, "--no-report")
    return out


def test_ensemble_trains_saves_reloads_and_predicts(ensemble_model, small_hymenoptera):
    meta = json.loads((ensemble_model / "model.json").read_text())
    assert meta["backbone"]["name"] == PAIR and meta["backbone"]["feature_dim"] == 2560
    clf = headstart.load(ensemble_model)
    assert clf.spec.name == PAIR and clf.metrics.accuracy >= 0.75
    images = sorted((small_hymenoptera / "val").rglob("*.jpg"))
    predictions = clf.predict(images)  # the ensemble graph on decoded crops, not the cached features
    accuracy = np.mean([label == path.parent.name for label, path in zip(predictions.labels, images)])
    assert accuracy == pytest.approx(clf.metrics.accuracy)  # the metrics are of these 12 val images
    # The CLI predicts with it too.
    out = headstart_cli("predict", ensemble_model, images[0], "--format", "jsonl").stdout
    assert json.loads(out.splitlines()[0])["label"] == predictions.labels[0]


def test_ensemble_export_is_one_graph_that_verifies_against_pytorch(ensemble_model, tmp_path):
    import onnx

    clf = headstart.load(ensemble_model)
    result = clf.export("onnx", tmp_path / "m.onnx")
    v = result.verification
    assert v["top1_agreement"] == 1.0 and v["max_abs_diff"] <= 1e-4 and v["images"] == 12
    graph = onnx.load(str(result.path)).graph
    assert [i.name for i in graph.input] == ["pixels"] and len(graph.output) == 1  # whole images, cropped inside
    assert v["runtimes"]["onnxruntime"]["top1_agreement"] == 1.0
    assert any(node.op_type == "Resize" for node in graph.node)  # the 240 px crop resized for MobileNetV2


def test_ensembles_are_not_fine_tuned_and_take_no_weights_file(small_hymenoptera, tmp_path):
    bad = headstart_cli("train", small_hymenoptera, "--backbone", PAIR, "--fine-tune", "2", check=False)
    assert bad.returncode == 2 and "is a feature ensemble, trained on frozen features only" in bad.stderr
    bad = headstart_cli("train", small_hymenoptera, "--backbone", PAIR, "--weights", tmp_path / "w.pth", check=False)
    assert bad.returncode == 2 and "each member loads its installed weights" in bad.stderr
    image = next((small_hymenoptera / "val" / "ants").iterdir())
    bad = headstart_cli("imagenet", "--backbone", PAIR, image, check=False)
    assert bad.returncode == 2 and "has no ImageNet classifier" in bad.stderr
