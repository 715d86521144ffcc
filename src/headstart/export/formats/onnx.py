"""ONNX: the TorchScript exporter's graph (opset 17), and its int8 form by onnxruntime's static
quantisation; both run in onnxruntime, and `headstart.load` reads them back (`ExportedModel`)."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..registry import ExportFormat, ExportJob, register_export_format

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from ...inference.exported import ExportedModel


def write_onnx(job: ExportJob, target: Path | None = None) -> None:
    """The fp32 graph, with labels and preprocessing in its metadata."""
    import onnx

    from ...inference.exported import METADATA_KEY
    from ...inference.runtime import export_onnx

    target = target or job.target
    export_onnx(job.net, target, job.model.preprocessing.image_size, output_name="probabilities")
    proto = onnx.load(str(target))
    props = {METADATA_KEY: json.dumps(job.metadata(), ensure_ascii=False)}
    onnx.helper.set_model_props(proto, props)
    onnx.save(proto, str(target))


def write_onnx_int8(job: ExportJob) -> None:
    """The fp32 graph quantised to int8, calibrated on `job.calibration`."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from ...inference.pipeline import load_crops
    from ...inference.runtime import BATCH_SIZE

    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        write_onnx(job, fp32)
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        crops, _ = load_crops(job.calibration, job.model.preprocessing)
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
                str(job.target),
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


def run_onnx(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The file in onnxruntime."""
    from ...inference.runtime import onnx_runner

    return onnx_runner(path)


def load_onnx(path: Path) -> ExportedModel:
    """The file as a `Predictor` (labels and preprocessing from its metadata)."""
    from ...inference.exported import ExportedModel

    return ExportedModel(path)


ONNX_RUNTIME = "onnxruntime, and any ONNX runtime"
register_export_format(ExportFormat("onnx", ".onnx", "ONNX", ONNX_RUNTIME, write_onnx, run_onnx, load=load_onnx))
register_export_format(
    ExportFormat(
        "onnx-int8", ".int8.onnx", "int8 ONNX", "onnxruntime (com.microsoft QLinear operators)", write_onnx_int8,
        run_onnx, load=load_onnx, exact=False, calibrates=True,
    )
)  # fmt: skip
