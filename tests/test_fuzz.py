"""Fuzzing (hypothesis) of everything that reads a file a user hands over: model.json, an
export's ONNX metadata, a checkpoint's state.json, and image bytes. Each example must give a
result or one `HeadstartError`; any other exception, or an example over its deadline, fails."""

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import headstart
from headstart.bundle import integrity, load_model
from headstart.data.images import ImageDecodeError, decode
from headstart.errors import HeadstartError
from headstart.inference.exported import ExportedModel
from headstart.training.checkpoint import CheckpointState, FinishedHead, load_checkpoint, save_checkpoint
from tests.test_hostile import foreign_onnx

FUZZ = settings(
    max_examples=150,
    deadline=5000,  # ms per example: a hang fails
    database=None,  # nothing written beside the tests
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def paths_of(tree, prefix=()):
    """Every key path of a JSON tree, the root included."""
    yield prefix
    if isinstance(tree, dict):
        for k, v in tree.items():
            yield from paths_of(v, (*prefix, k))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            yield from paths_of(v, (*prefix, i))


def replaced(tree, path, value):
    if not path:
        return value
    tree = json.loads(json.dumps(tree))
    node = tree
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    return tree


@pytest.fixture(scope="module")
def bundle(small_hymenoptera, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz") / "model"
    headstart.train(small_hymenoptera, out=out, hidden=(4,))
    return out


@FUZZ
@given(data=st.data(), rehash=st.booleans())
def test_model_json_fuzz(bundle, tmp_path_factory, data, rehash):
    meta = json.loads((bundle / "model.json").read_text())
    where = data.draw(st.sampled_from(list(paths_of(meta))), label="field")
    edited = replaced(meta, where, data.draw(json_values, label="value"))
    if rehash and isinstance(edited, dict):  # as a careful forger would: the schema must still refuse
        try:
            edited["integrity"] = integrity(edited)
        except (KeyError, TypeError, AttributeError):
            pass
    target = tmp_path_factory.mktemp("b")
    shutil.copy(bundle / "model.safetensors", target)
    (target / "model.json").write_text(json.dumps(edited))
    try:
        model, _ = load_model(target)
    except HeadstartError:
        return
    assert len(model.classes) >= 2 and 16 <= model.preprocessing.image_size <= 1024  # accepted: sane


@FUZZ
@given(value=json_values | st.fixed_dictionaries({"labels": json_values, "preprocessing": json_values}))
def test_onnx_metadata_fuzz(tmp_path_factory, value):
    path = foreign_onnx(tmp_path_factory.mktemp("o") / "m.onnx", metadata=json.dumps(value))
    with pytest.raises(HeadstartError):
        ExportedModel(path)  # a foreign graph: refused whatever its metadata says, and in one line


@FUZZ
@given(data=st.data())
def test_checkpoint_fuzz(tmp_path_factory, data):
    import torch

    directory = tmp_path_factory.mktemp("c") / "run.checkpoint"
    state = CheckpointState("f" * 64, head=FinishedHead({"w": torch.ones(2, 3)}, {"val_loss": [0.5]}))
    save_checkpoint(directory, state.to_tree())
    meta = json.loads((directory / "state.json").read_text())
    where = data.draw(st.sampled_from(list(paths_of(meta))), label="field")
    (directory / "state.json").write_text(json.dumps(replaced(meta, where, data.draw(json_values, label="value"))))
    if data.draw(st.booleans(), label="damage tensors"):
        blob = bytearray((directory / "state.safetensors").read_bytes())
        cut = data.draw(st.integers(0, len(blob)), label="truncate at")
        (directory / "state.safetensors").write_bytes(bytes(blob[:cut]))
    try:
        loaded = load_checkpoint(directory, "f" * 64)
    except HeadstartError:
        return
    assert torch.equal(loaded.head.head["w"], torch.ones(2, 3))  # accepted: intact


def encoded(fmt: str, mode: str) -> bytes:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


SEEDS = [
    encoded(fmt, mode)
    for fmt, mode in [("PNG", "RGB"), ("PNG", "P"), ("JPEG", "RGB"), ("GIF", "P"), ("BMP", "RGB"), ("TIFF", "RGBA")]
    + [("WEBP", "RGB"), ("PNG", "LA"), ("TIFF", "I;16"), ("JPEG", "CMYK")]
]


@FUZZ
@given(
    seed=st.sampled_from(SEEDS),
    flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    cut=st.none() | st.integers(0, 10_000),
)
def test_image_decoder_fuzz_on_damaged_real_files(seed, flips, cut):
    data = bytearray(seed)
    for at, value in flips:
        data[at % len(data)] = value
    if cut is not None:
        data = data[:cut]
    try:
        image = decode(bytes(data), min_size=16)
    except ImageDecodeError:
        return
    assert image.mode == "RGB" and image.size[0] * image.size[1] > 0


@FUZZ
@given(data=st.binary(max_size=4096))
def test_image_decoder_fuzz_on_random_bytes(data):
    try:
        assert decode(data).mode == "RGB"
    except ImageDecodeError:
        pass
