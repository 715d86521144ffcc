"""ONNX: the TorchScript exporter's graph (opset 17), and its int8 form by onnxruntime's static
quantisation. `onnx` and `onnx-int8` take one decoded image of any size (`pixels`): the crop is in
the graph (`inference/pixels.py`), in front of the crop network, which keeps its input's name
(`images`) inside the file. `onnx-crops` is the crop network alone, for runtimes that need static
spatial shapes or batches, with the crop's exact recipe in its metadata. `headstart.load` reads all
three back (`ExportedModel`)."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ..registry import PIXELS, ExportFormat, ExportJob, Runtime, register_export_format
from ._quiet import logger_quieted

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy as np

    from ...inference.exported import ExportedModel
    from ...preprocessing import Preprocessing


def write_onnx_crops(job: ExportJob, target: Path | None = None) -> None:
    """The fp32 crop network (uint8 crops in), with labels and preprocessing in its metadata."""
    from ...inference.runtime import export_onnx

    target = target or job.target
    export_onnx(job.net, target, job.model.preprocessing.image_size, output_name="probabilities")
    save_with_metadata(onnx_load(target), job, target)


def write_onnx(job: ExportJob) -> None:
    """The fp32 crop network with the crop in front: one decoded image of any size in."""
    with tempfile.TemporaryDirectory() as tmp:
        crops = Path(tmp) / "crops.onnx"
        write_onnx_crops(job, crops)
        save_with_metadata(with_crop_in_front(onnx_load(crops), job), job, job.target)


def onnx_load(path: Path):
    """An ONNX file as a ModelProto (onnx imported only when an export runs)."""
    import onnx

    return onnx.load(str(path))


def save_with_metadata(proto, job: ExportJob, target: Path) -> None:
    """Write `proto` with headstart's metadata (labels, preprocessing, input, output) in it."""
    import onnx

    from ...inference.exported import METADATA_KEY

    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, {METADATA_KEY: json.dumps(job.metadata(), ensure_ascii=False)})
    onnx.save(proto, str(target))


def with_crop_in_front(network, job: ExportJob):
    """`network` (uint8 crops `images` in) behind `CentreCrop`: `pixels` (1, H, W, 3) in, H and W dynamic."""
    import onnx

    from ...inference.exported import CROP_TENSOR
    from ...inference.pixels import export_centre_crop

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "crop.onnx"
        export_centre_crop(job.model.preprocessing, path, CROP_TENSOR)
        crop = onnx.load(str(path))
    crop.ir_version = network.ir_version  # the crop uses opset-17 operators only: any later IR holds them
    opsets = {o.domain: o.version for o in network.opset_import}
    del crop.opset_import[:]
    crop.opset_import.extend(onnx.helper.make_opsetid(d, v) for d, v in opsets.items())
    # The two graphs come from one exporter, so their inner names clash ("/Constant_output_0"): the
    # crop's get a prefix, its input and output keep theirs.
    crop = onnx.compose.add_prefix(crop, "crop/", rename_inputs=False, rename_outputs=False)
    return onnx.compose.merge_models(crop, network, io_map=[(CROP_TENSOR, "images")])


def write_onnx_int8(job: ExportJob) -> None:
    """The crop network quantised to int8 (calibrated on `job.calibration`), the crop in front in fp32."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from ...inference.pipeline import load_crops

    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared, quantised = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        write_onnx_crops(job, fp32)
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        crops, _ = load_crops(job.calibration, job.model.preprocessing)
        batches = [crops[i : i + 1] for i in range(len(crops))]  # the percentile calibrator needs equal batches

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.batches = iter(batches)

            def get_next(self):
                batch = next(self.batches, None)
                return None if batch is None else {"images": batch}

        # QDQ (standard QuantizeLinear/DequantizeLinear around each op): OpenVINO and OpenCV load it,
        # where com.microsoft's QLinear operators (QOperator) fail or run wrong. Only the convolutions
        # and what follows them are quantised; pooling, head and softmax stay fp32 (no probabilities
        # in 1/256 steps, no exact ties). Per-channel int8 weights, uint8 activations whose ranges
        # clip the top 0.01% of calibration values: on hymenoptera's val crops, agreement with fp32
        # was 94.1% with min-max ranges, 100% with these (98.7% at 99.999% or 99.9%). Weights use 7
        # of their 8 bits (reduce_range, onnxruntime's remedy for u8 x s8 pair sums that saturate
        # int16 in kernels without VNNI): OpenVINO's top-1 agreement with headstart on hymenoptera's
        # val photos went from 95.4% to 100%, onnxruntime's from 98.7% to 99.3%.
        # The quantiser prints, and logs a protobuf dump of the uint8 input it leaves alone.
        with contextlib.redirect_stdout(io.StringIO()), logger_quieted():
            quantize_static(
                str(prepared),
                str(quantised),
                Reader(),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=["Conv", "Clip", "Add"],
                per_channel=True,
                reduce_range=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.Percentile,
                extra_options={"CalibPercentile": 99.99},
            )
        save_with_metadata(with_crop_in_front(onnx_load(quantised), job), job, job.target)


def run_onnx(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The file's crop network in onnxruntime, on a batch of crops."""
    from ...inference.exported import crop_network
    from ...inference.runtime import ort_session

    session = ort_session(crop_network(path))
    return lambda batch: session.run(None, {"images": batch})[0]


def in_onnxruntime(path: Path, _preprocessing: Preprocessing) -> Callable[[Path], np.ndarray]:
    """The whole file in onnxruntime, each image decoded by Pillow as a user would (EXIF orientation
    applied, RGB, full size)."""
    import numpy as np
    from PIL import Image, ImageOps

    from ...inference.runtime import ort_session

    session = ort_session(path)

    def run(image: Path) -> np.ndarray:
        with Image.open(image) as im:
            pixels = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
        return session.run(None, {"pixels": pixels[None]})[0][0]

    return run


def opencv_rgb(image: Path) -> np.ndarray:
    """An image as OpenCV users read it (imread applies EXIF orientation), turned from BGR to RGB."""
    import cv2
    import numpy as np

    bgr = cv2.imdecode(np.fromfile(image, np.uint8), cv2.IMREAD_COLOR)  # imread can't take every path
    if bgr is None:
        raise ValueError(f"{image}: OpenCV can't decode it")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def in_openvino(path: Path, _preprocessing: Preprocessing) -> Callable[[Path], np.ndarray]:
    """The whole file in OpenVINO on the CPU in f32 (its default on CPUs with bf16, as here, is bf16:
    about 0.03 in probability), images decoded by OpenCV."""
    import openvino

    model = openvino.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return lambda image: model(opencv_rgb(image)[None])[0][0]


def in_opencv(path: Path, _preprocessing: Preprocessing) -> Callable[[Path], np.ndarray]:
    """The whole file in OpenCV's DNN module, images decoded by OpenCV."""
    import cv2

    net = cv2.dnn.readNetFromONNX(str(path))

    def run(image: Path) -> np.ndarray:
        net.setInput(opencv_rgb(image)[None])
        return net.forward()[0]

    return run


ONNX_RUNTIMES = (
    Runtime("onnxruntime", "Pillow, EXIF orientation applied", in_onnxruntime, ("onnxruntime",)),
    Runtime("OpenVINO (f32)", "OpenCV imdecode, BGR -> RGB", in_openvino, ("openvino", "cv2")),
    Runtime("OpenCV DNN", "OpenCV imdecode, BGR -> RGB", in_opencv, ("cv2",)),
)


def load_onnx(path: Path) -> ExportedModel:
    """The file as a `Predictor` (labels and preprocessing from its metadata)."""
    from ...inference.exported import ExportedModel

    return ExportedModel(path)


ONNX_RUNTIME = "onnxruntime, OpenVINO, OpenCV DNN: any ONNX runtime"
register_export_format(
    ExportFormat(
        "onnx", ".onnx", "ONNX", ONNX_RUNTIME, write_onnx, run_onnx, load=load_onnx,
        input=PIXELS, runtimes=ONNX_RUNTIMES,
    )
)  # fmt: skip
register_export_format(
    ExportFormat(
        "onnx-crops", ".crops.onnx", "ONNX (crops in)", f"{ONNX_RUNTIME}; static spatial shapes, batches",
        write_onnx_crops, run_onnx, load=load_onnx,
    )
)  # fmt: skip
register_export_format(
    ExportFormat(
        "onnx-int8", ".int8.onnx", "int8 ONNX", "onnxruntime, OpenVINO, OpenCV DNN (QDQ int8)", write_onnx_int8,
        run_onnx, load=load_onnx, exact=False, calibrates=True, input=PIXELS, runtimes=ONNX_RUNTIMES,
    )
)  # fmt: skip
