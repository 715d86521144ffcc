"""Exports for every runtime a user ships to, each verified against the PyTorch model right after
it is written. The exported graph takes uint8 RGB crops (N, 224, 224, 3), already resized and
centre-cropped as the bundle's preprocessing says, and returns class probabilities."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
from torch import nn

from .errors import HeadstartError
from .fsutil import default_mode
from .features import BATCH_SIZE, batched_inference, export_onnx, load_crops, ort_session, run_batched
from .preprocessing import Normalize, Preprocessing

if TYPE_CHECKING:
    from .classifier import Classifier, Predictions

SUFFIX = {"onnx": ".onnx", "onnx-int8": ".int8.onnx", "tflite": ".tflite", "tflite-int8": ".int8.tflite", "torch-export": ".pt2"}
FORMATS = tuple(SUFFIX)
FP32_TOLERANCE = 1e-4  # largest probability difference an fp32 export may show
METADATA_KEY = "headstart"


class ClassifierNet(nn.Module):
    """The whole model as one graph: uint8 crops in, probabilities out."""

    def __init__(self, backbone: nn.Module, head: nn.Module, preprocessing: Preprocessing, temperature: float = 1.0):
        super().__init__()
        self.normalize = Normalize(preprocessing)
        self.backbone = backbone
        self.head = head
        self.temperature = float(temperature)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.backbone.forward_features(self.normalize(images)))
        return torch.softmax(logits / self.temperature if self.temperature != 1.0 else logits, dim=1)


@dataclass
class ExportResult:
    path: Path
    format: str
    verification: dict

    def __str__(self) -> str:
        v = self.verification
        text = f"{self.path} ({self.format}): top-1 agreement {v['top1_agreement']:.1%} on {v['images']} images, max |Δp| {v['max_abs_diff']:.2e}"
        if "accuracy" in v:
            text += f"; accuracy {v['accuracy']['pytorch']:.3f} -> {v['accuracy']['export']:.3f} on {v['accuracy']['split']}"
        return text


def metadata(clf: Classifier, fmt: str) -> dict:
    return {
        "format": fmt,
        "labels": clf.classes,
        "backbone": clf.spec.name,
        "preprocessing": clf.preprocessing.to_dict(),
        "input": {"name": "images", "dtype": "uint8", "shape": ["N", clf.preprocessing.image_size, clf.preprocessing.image_size, 3],
                  "layout": "NHWC RGB, resized and centre-cropped as in preprocessing (normalisation is inside the model)"},
        "output": {"name": "probabilities", "shape": ["N", len(clf.classes)]},
    }


# -- runners: exported file -> callable(uint8 batch) -> probabilities -------------------------------
def onnx_runner(path: Path, spinning: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    session = ort_session(path, spinning)
    return lambda batch: session.run(None, {"images": batch})[0]


def tflite_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(batch: np.ndarray) -> np.ndarray:
        rows = []
        for image in batch:  # converted with a batch of one
            interpreter.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
            interpreter.invoke()
            rows.append(interpreter.get_tensor(out["index"])[0])
        return np.stack(rows)

    return run


def torch_export_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    program = torch.export.load(str(path)).module()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return program(torch.from_numpy(batch)).numpy()

    return run


RUNNERS = {"onnx": onnx_runner, "onnx-int8": onnx_runner, "tflite": tflite_runner, "tflite-int8": tflite_runner, "torch-export": torch_export_runner}


# -- writers ------------------------------------------------------------------------------------
def _write_onnx(net: nn.Module, target: Path, clf: Classifier, fmt: str) -> None:
    import onnx

    export_onnx(net, target, clf.preprocessing.image_size, output_name="probabilities")
    model = onnx.load(str(target))
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata(clf, fmt), ensure_ascii=False)})
    onnx.save(model, str(target))


def _write_onnx_int8(net: nn.Module, target: Path, clf: Classifier, fmt: str, calibration: list[Path]) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quant_pre_process, quantize_static

    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        _write_onnx(net, fp32, clf, fmt)
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        crops, _ = load_crops(calibration, clf.preprocessing)
        batches = [crops[i : i + BATCH_SIZE] for i in range(0, len(crops), BATCH_SIZE)]

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.batches = iter(batches)

            def get_next(self):
                batch = next(self.batches, None)
                return None if batch is None else {"images": batch}

        # QOperator (fused QLinearConv) ran 1.56x faster than fp32 at batch 1 here, QDQ only 1.09x;
        # per-channel int8 weights, uint8 activations (measured: bench/predict_speed.py).
        with contextlib.redirect_stdout(io.StringIO()), _quiet_logging():
            quantize_static(str(prepared), str(target), Reader(), quant_format=QuantFormat.QOperator, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)


@contextlib.contextmanager
def _quiet_logging():
    """The quantiser logs a protobuf dump for the uint8 input it leaves alone; nothing for users."""
    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _write_tflite(net: nn.Module, target: Path, clf: Classifier, fmt: str) -> None:
    try:
        import litert_torch
    except ImportError:
        raise HeadstartError(
            "TFLite export needs litert-torch (about 2 GB): pip install 'litert-torch==0.10.0' 'ai-edge-litert==2.3.0'"
            + (" 'ai-edge-quantizer==0.10.0'" if fmt == "tflite-int8" else "")
        ) from None
    size = clf.preprocessing.image_size
    # The converter narrates every pass; keep it for an error message, not for the user's terminal.
    log = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        warnings.simplefilter("ignore")
        edge = litert_torch.convert(net.eval(), (torch.zeros(1, size, size, 3, dtype=torch.uint8),))
        if fmt == "tflite-int8":
            from ai_edge_quantizer import quantizer, recipe

            with tempfile.TemporaryDirectory() as tmp:
                fp32 = Path(tmp) / "fp32.tflite"
                edge.export(str(fp32))
                q = quantizer.Quantizer(str(fp32))
                q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
                q.quantize().export_model(str(target))
        else:
            edge.export(str(target))
    (target.parent / f"{target.name}.labels.txt").write_text("\n".join(clf.classes) + "\n", "utf-8")


def _write_torch_export(net: nn.Module, target: Path, clf: Classifier, fmt: str) -> None:
    size = clf.preprocessing.image_size
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        program = torch.export.export(net.eval(), (torch.zeros(2, size, size, 3, dtype=torch.uint8),), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(target))


# -- the export itself --------------------------------------------------------------------------
def export(
    clf: Classifier,
    fmt: str = "onnx",
    path: str | Path | None = None,
    overwrite: bool = False,
    data: str | Path | None = None,
    verify_images: int = 64,
) -> ExportResult:
    """Write `clf` in format `fmt`, verify it against PyTorch on held-out images, write
    `<file>.json` beside it (labels, preprocessing, verification) and return the result."""
    if fmt not in FORMATS:
        raise HeadstartError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    target = Path(path) if path else Path(f"model{SUFFIX[fmt]}")
    if target.is_dir():
        target = target / f"model{SUFFIX[fmt]}"
    if target.exists() and not overwrite:
        raise HeadstartError(f"{target}: already exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)

    images, labels, split = clf.reference_images(data)
    images, labels = images[:verify_images], labels[:verify_images]
    net = ClassifierNet(clf.extractor.backbone, clf.head, clf.preprocessing, clf.temperature).eval()
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staged = staging / target.name
    try:
        if fmt == "onnx":
            _write_onnx(net, staged, clf, fmt)
        elif fmt == "onnx-int8":
            _write_onnx_int8(net, staged, clf, fmt, clf.training_images(data, limit=256))
        elif fmt.startswith("tflite"):
            _write_tflite(net, staged, clf, fmt)
        else:
            _write_torch_export(net, staged, clf, fmt)
        verification = verify(net, RUNNERS[fmt](staged), images, labels, clf.preprocessing, split)
        if not fmt.endswith("int8") and (verification["top1_agreement"] < 1.0 or verification["max_abs_diff"] > FP32_TOLERANCE):
            raise HeadstartError(f"{fmt} export disagrees with the PyTorch model ({verification}); nothing was written")
        sidecar = metadata(clf, fmt) | {"verification": verification}
        (staging / f"{target.name}.json").write_text(json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n", "utf-8")
        for item in staging.iterdir():
            os.chmod(item, default_mode())
            os.replace(item, target.parent / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(target, fmt, verification)


def verify(net: nn.Module, runner, images: list[Path], labels: list[int], preprocessing: Preprocessing, split: str) -> dict:
    """Run the exported model and PyTorch on the same real images and compare."""
    crops, ok = load_crops(images, preprocessing)
    if not len(crops):
        raise HeadstartError("no held-out images to verify the export on; pass --data with the training folder")
    with torch.inference_mode():
        a = run_batched(lambda b: net(torch.from_numpy(b)).numpy(), crops)
    b = run_batched(runner, crops)
    y = np.array(labels)[ok]
    return {
        "images": len(a),
        "split": split,
        "top1_agreement": float(np.mean(a.argmax(1) == b.argmax(1))),
        "max_abs_diff": float(np.abs(a - b).max()),
        "accuracy": {"split": split, "pytorch": float(np.mean(a.argmax(1) == y)), "export": float(np.mean(b.argmax(1) == y))},
    }


class ExportedModel:
    """An exported ONNX model with its labels, usable without torch: `headstart predict model.onnx ...`."""

    def __init__(self, path: str | Path):
        import onnx

        self.path = Path(path)
        try:
            model = onnx.load(str(self.path), load_external_data=False)
        except Exception as e:  # onnx raises DecodeError and friends
            raise HeadstartError(f"{self.path}: not a readable ONNX model ({type(e).__name__})") from None
        props = {p.key: p.value for p in model.metadata_props}
        if METADATA_KEY not in props:
            raise HeadstartError(f"{self.path}: not exported by headstart (no labels in its metadata)")
        meta = json.loads(props[METADATA_KEY])
        self.classes = list(meta["labels"])
        self.preprocessing = Preprocessing.from_dict(meta["preprocessing"])
        outputs = model.graph.output[0].type.tensor_type.shape.dim
        width = outputs[-1].dim_value if outputs else 0
        if width != len(self.classes):
            raise HeadstartError(f"{self.path}: model outputs {width} classes but its metadata lists {len(self.classes)} labels")
        self._run = onnx_runner(self.path)

    def predict(self, inputs, quiet: bool = True) -> Predictions:
        from .classifier import Predictions, collect_images

        paths, failures = collect_images([inputs] if isinstance(inputs, (str, Path)) else inputs)
        result = batched_inference(paths, self.preprocessing, self._run, len(self.classes), description="Predicting", quiet=quiet)
        return Predictions.from_probabilities(self.classes, paths, result.ok, result.features, failures | result.failures)
