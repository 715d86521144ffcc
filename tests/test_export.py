"""Every export format agrees with the PyTorch model on real images; labels travel with it."""

import json
import sys
import zipfile

import numpy as np
import onnx
import pytest

import headstart
from headstart.errors import HeadstartError
from headstart.inference.exported import ExportedModel


@pytest.fixture(scope="module")
def clf(small_hymenoptera, tmp_path_factory):
    out = tmp_path_factory.mktemp("export-model") / "model"
    headstart.train(small_hymenoptera, out=out)
    return headstart.load(out)


def check_fp32(result, clf):
    v = result.verification
    assert v["top1_agreement"] == 1.0 and v["max_abs_diff"] <= 1e-4
    assert v["images"] == 12 and v["split"] == "val"  # every held-out image of the small set
    sidecar = json.loads(result.path.with_name(result.path.name + ".json").read_text())
    assert sidecar["labels"] == clf.classes and sidecar["verification"] == v
    assert sidecar["preprocessing"] == clf.preprocessing.to_dict()


def test_onnx_runs_without_torch_and_agrees(clf, tmp_path, small_hymenoptera):
    result = clf.export("onnx", tmp_path / "m.onnx")
    check_fp32(result, clf)
    meta = json.loads({p.key: p.value for p in onnx.load(str(result.path)).metadata_props}["headstart"])
    assert meta["labels"] == ["ants", "bees"]
    images = sorted((small_hymenoptera / "val").rglob("*.jpg"))
    exported, original = ExportedModel(result.path).predict(images), clf.predict(images)
    assert exported.labels == original.labels
    np.testing.assert_allclose([p.probability for p in exported], [p.probability for p in original], atol=1e-4)


def test_onnx_int8_is_smaller_and_reports_accuracy_change(clf, tmp_path):
    fp32 = clf.export("onnx", tmp_path / "m.onnx").path
    result = clf.export("onnx-int8", tmp_path / "m.int8.onnx")
    assert result.path.stat().st_size < 0.4 * fp32.stat().st_size
    v = result.verification
    assert v["top1_agreement"] >= 0.9 and set(v["accuracy"]) == {"split", "pytorch", "export"}
    assert ExportedModel(result.path).classes == clf.classes


def test_torch_export_program_agrees(clf, tmp_path):
    check_fp32(clf.export("torch-export", tmp_path / "m.pt2"), clf)


@pytest.mark.parametrize("fmt", ["tflite", "tflite-int8"])
def test_tflite_agrees_and_carries_labels_and_its_real_tensor_names(clf, tmp_path, fmt):
    from ai_edge_litert.interpreter import Interpreter  # installed by `make test`: never skipped

    result = clf.export(fmt, tmp_path / f"m.{fmt}")
    if fmt == "tflite":
        check_fp32(result, clf)
    else:
        assert result.verification["top1_agreement"] >= 0.9
    assert (tmp_path / f"m.{fmt}.labels.txt").read_text().split() == clf.classes
    with zipfile.ZipFile(result.path) as packed:  # MediaPipe's metadata packs the label file inside
        assert packed.read("labels.txt").decode().split() == clf.classes
    metadata = tflite_metadata(result.path.read_bytes())
    assert metadata.MinParserVersion() == b"1.0.0"  # what headstart computes for the writer's missing module
    assert b"box=(left, top, left + side, top + side)" in metadata.Description()  # the crop's recipe
    sidecar = json.loads(result.path.with_name(result.path.name + ".json").read_text())
    interpreter = Interpreter(model_path=str(result.path))
    (given,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert sidecar["input"]["name"] == given["name"] and sidecar["input"]["shape"] == given["shape"].tolist()
    assert sidecar["output"]["name"] == output["name"] and sidecar["output"]["shape"] == [1, len(clf.classes)]
    assert interpreter.get_signature_list()["serving_default"] == {"inputs": ["images"], "outputs": ["probabilities"]}


def tflite_metadata(data: bytes):
    """The TFLite file's MediaPipe metadata table, read with MediaPipe's generated schema."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as metadata_schema
    from mediapipe.tasks.metadata import schema_py_generated as tflite_schema

    model = tflite_schema.Model.GetRootAsModel(data, 0)
    entries = [model.Metadata(i) for i in range(model.MetadataLength())]
    (entry,) = [e for e in entries if e.Name() == b"TFLITE_METADATA"]
    buffer = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    return metadata_schema.ModelMetadata.GetRootAsModelMetadata(buffer, 0)


def test_tflite_without_converter_says_how_to_install(clf, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "litert_torch", None)  # makes `import litert_torch` fail
    with pytest.raises(HeadstartError, match="pip install 'litert-torch==0.10.0'"):
        clf.export("tflite", tmp_path / "m.tflite")
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_never_overwrites_unless_asked(clf, tmp_path):
    path = clf.export("onnx", tmp_path / "m.onnx").path
    with pytest.raises(HeadstartError, match="already exists; pass --force"):
        clf.export("onnx", path)
    assert clf.export("onnx", path, overwrite=True).path == path


def test_mismatched_onnx_is_refused(clf, tmp_path):
    path = clf.export("onnx", tmp_path / "m.onnx").path
    model = onnx.load(str(path))
    meta = json.loads(model.metadata_props[0].value)
    meta["labels"].append("wasps")
    onnx.helper.set_model_props(model, {"headstart": json.dumps(meta)})
    onnx.save(model, str(tmp_path / "bad.onnx"))
    with pytest.raises(HeadstartError, match="outputs 2 classes but its metadata lists 3 labels"):
        ExportedModel(tmp_path / "bad.onnx")
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "foreign.onnx"))
    with pytest.raises(HeadstartError, match="not exported by headstart"):
        ExportedModel(tmp_path / "foreign.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(HeadstartError, match="not a readable ONNX model"):
        ExportedModel(tmp_path / "junk.onnx")


def test_unknown_format_lists_the_choices(clf):
    with pytest.raises(HeadstartError, match="onnx, onnx-crops, onnx-int8, tflite, tflite-int8, torch-export, web"):
        clf.export("coreml")
