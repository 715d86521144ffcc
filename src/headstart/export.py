"""Exports for every runtime a user ships to, each verified against the PyTorch model right after
it is written. The exported graph takes uint8 RGB crops (N, 224, 224, 3), already resized and
centre-cropped as the model's preprocessing says, and returns class probabilities."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .data.labelled import LabelledImages
from .errors import HeadstartError
from .events import EventBus, as_bus
from .formats import FORMATS, SUFFIX
from .fsutil import default_mode
from .inference.exported import METADATA_KEY
from .inference.features import load_crops
from .inference.model import Model
from .inference.runtime import BATCH_SIZE, export_onnx, onnx_runner, run_batched
from .preprocessing import Preprocessing

FP32_TOLERANCE = 1e-4  # largest probability difference an fp32 export may show


@dataclass
class ExportResult:
    """An export written and verified: where, which format, and how it compared with PyTorch."""

    path: Path
    format: str
    verification: dict

    def __str__(self) -> str:
        v = self.verification
        text = (
            f"{self.path} ({self.format}): top-1 agreement {v['top1_agreement']:.1%} on {v['images']} images, "
            f"max |Δp| {v['max_abs_diff']:.2e}"
        )
        if "accuracy" in v:
            accuracy = v["accuracy"]
            text += f"; accuracy {accuracy['pytorch']:.3f} -> {accuracy['export']:.3f} on {accuracy['split']}"
        return text


def metadata(model: Model, fmt: str) -> dict:
    """What travels with an exported file: labels, preprocessing, the input and output."""
    size = model.preprocessing.image_size
    return {
        "format": fmt,
        "labels": model.classes,
        "backbone": model.spec.name,
        "preprocessing": model.preprocessing.to_dict(),
        "test_time_augmentation": model.tta,  # already inside the graph: run it on the plain crop
        "input": {
            "name": "images",
            "dtype": "uint8",
            "shape": ["N", size, size, 3],
            "layout": "NHWC RGB, resized and centre-cropped as in preprocessing (normalisation is inside the model)",
        },
        "output": {"name": "probabilities", "shape": ["N", len(model.classes)]},
    }


# -- runners: exported file -> callable(uint8 batch) -> probabilities -------------------------------
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


RUNNERS = {
    "onnx": onnx_runner,
    "onnx-int8": onnx_runner,
    "tflite": tflite_runner,
    "tflite-int8": tflite_runner,
    "torch-export": torch_export_runner,
}


# -- writers ------------------------------------------------------------------------------------
def _write_onnx(net: nn.Module, target: Path, model: Model, fmt: str) -> None:
    import onnx

    export_onnx(net, target, model.preprocessing.image_size, output_name="probabilities")
    proto = onnx.load(str(target))
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(metadata(model, fmt), ensure_ascii=False)})
    onnx.save(proto, str(target))


def _write_onnx_int8(net: nn.Module, target: Path, model: Model, fmt: str, calibration: list[Path]) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        _write_onnx(net, fp32, model, fmt)
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        crops, _ = load_crops(calibration, model.preprocessing)
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
            quantize_static(
                str(prepared),
                str(target),
                Reader(),
                quant_format=QuantFormat.QOperator,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )


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


def _write_tflite(net: nn.Module, target: Path, model: Model, fmt: str) -> None:
    try:
        import litert_torch
    except ImportError:
        raise HeadstartError(
            "TFLite export needs litert-torch (about 2 GB): pip install 'litert-torch==0.10.0' 'ai-edge-litert==2.3.0'"
            + (" 'ai-edge-quantizer==0.10.0'" if fmt == "tflite-int8" else "")
        ) from None
    size = model.preprocessing.image_size
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
    (target.parent / f"{target.name}.labels.txt").write_text("\n".join(model.classes) + "\n", "utf-8")


def _write_torch_export(net: nn.Module, target: Path, model: Model, fmt: str) -> None:
    size = model.preprocessing.image_size
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        program = torch.export.export(
            net.eval(), (torch.zeros(2, size, size, 3, dtype=torch.uint8),), dynamic_shapes=({0: batch},)
        )
    torch.export.save(program, str(target))


# -- the export itself --------------------------------------------------------------------------
def export(
    model: Model,
    fmt: str = "onnx",
    path: str | Path | None = None,
    *,
    images: LabelledImages,
    calibration_images: list[Path] | None = None,
    overwrite: bool = False,
    verify_images: int = 64,
    events: EventBus | None = None,
) -> ExportResult:
    """Write `model` in format `fmt`, verify it against PyTorch, and write `<file>.json` beside it.

    Args:
        model: the model to export.
        fmt: one of FORMATS: onnx, onnx-int8, tflite, tflite-int8, torch-export.
        path: the file (or a folder for it); default `model<suffix>` here.
        images: labelled held-out images to verify on (the first `verify_images`).
        calibration_images: training images int8 quantisation calibrates on.
        overwrite: replace an existing file.
        events: receives the "export" stage's events.

    Returns:
        The file written and its verification (top-1 agreement, max probability difference,
        accuracy of both). An fp32 export that disagrees is deleted and reported as an error.

    Example:
        >>> clf = headstart.train(ants_bees)
        >>> result = export(clf, "torch-export", tmp / "ants.pt2", images=clf.held_out())
        >>> result.path.name, result.verification["images"], result.verification["top1_agreement"]
        ('ants.pt2', 12, 1.0)
    """
    if fmt not in FORMATS:
        raise HeadstartError(f"unknown export format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    target = Path(path) if path else Path(f"model{SUFFIX[fmt]}")
    if target.is_dir():
        target = target / f"model{SUFFIX[fmt]}"
    if target.exists() and not overwrite:
        raise HeadstartError(f"{target}: already exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)

    writers = {
        "onnx": _write_onnx,
        "onnx-int8": lambda *a: _write_onnx_int8(*a, calibration_images or []),
        "tflite": _write_tflite,
        "tflite-int8": _write_tflite,
        "torch-export": _write_torch_export,
    }
    net = model.graph()
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    staged = staging / target.name
    try:
        with as_bus(events).stage("export", 2, "steps", f"Exporting {fmt}") as progress:
            writers[fmt](net, staged, model, fmt)
            progress.advance()
            verification = verify(
                net,
                RUNNERS[fmt](staged),
                images.paths[:verify_images],
                images.labels[:verify_images],
                model.preprocessing,
                images.split,
            )
            progress.advance()
        fp32 = not fmt.endswith("int8")
        if fp32 and (verification["top1_agreement"] < 1.0 or verification["max_abs_diff"] > FP32_TOLERANCE):
            raise HeadstartError(f"{fmt} export disagrees with the PyTorch model ({verification}); nothing was written")
        sidecar = metadata(model, fmt) | {"verification": verification}
        (staging / f"{target.name}.json").write_text(json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n", "utf-8")
        for item in staging.iterdir():
            os.chmod(item, default_mode())
            os.replace(item, target.parent / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(target, fmt, verification)


def verify(
    net: nn.Module,
    runner: Callable[[np.ndarray], np.ndarray],
    images: list[Path],
    labels: np.ndarray,
    preprocessing: Preprocessing,
    split: str,
) -> dict:
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
        "accuracy": {
            "split": split,
            "pytorch": float(np.mean(a.argmax(1) == y)),
            "export": float(np.mean(b.argmax(1) == y)),
        },
    }
