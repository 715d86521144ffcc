"""A model headstart exported to ONNX, run by onnxruntime alone (no PyTorch network is built)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import HeadstartError
from ..preprocessing import Preprocessing
from ..schema import ExportMeta, parse_json, validate
from .predictor import PortableNetwork, Predictor
from .runtime import onnx_runner

METADATA_KEY = "headstart"  # the ONNX metadata property holding labels and preprocessing
MAX_ONNX_BYTES = 2 << 30  # protobuf's own limit: a larger file can't be a single ONNX model


class ExportedModel(Predictor):
    """An ONNX file exported by headstart, with its labels: `headstart.load("model.onnx")`.

    Refuses a file headstart did not write, or whose labels do not fit its outputs.
    """

    def __init__(self, path: str | Path):
        import onnx

        self.path = Path(path)
        try:
            size = self.path.stat().st_size
        except OSError as e:
            raise HeadstartError(f"{self.path}: cannot read ({e.strerror or e})") from None
        if size > MAX_ONNX_BYTES:
            raise HeadstartError(f"{self.path}: larger than {MAX_ONNX_BYTES >> 30} GB; not a model headstart exported")
        try:
            model = onnx.load(str(self.path), load_external_data=False)
        except Exception as e:  # onnx raises DecodeError and friends
            raise HeadstartError(f"{self.path}: not a readable ONNX model ({type(e).__name__})") from None
        props = {p.key: p.value for p in model.metadata_props}
        if METADATA_KEY not in props:
            raise HeadstartError(f"{self.path}: not exported by headstart (no labels in its metadata)")
        where = f"{self.path} (metadata)"
        meta = validate(ExportMeta, parse_json(props[METADATA_KEY], where), where)
        self.classes = list(meta.labels)
        self.preprocessing = Preprocessing.from_dict(meta.preprocessing.model_dump())
        self._check_signature(model)
        try:
            self._run = onnx_runner(self.path)
        except Exception as e:  # onnxruntime's own exception types: an invalid or unsupported graph
            raise HeadstartError(f"{self.path}: onnxruntime can't run it ({type(e).__name__})") from None

    def _check_signature(self, model) -> None:
        """One uint8 input (N, size, size, 3) and one output (N, classes), as headstart exports."""
        from onnx import TensorProto

        graph, size, n = model.graph, self.preprocessing.image_size, len(self.classes)
        inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
        if len(inputs) != 1 or len(graph.output) < 1:
            raise HeadstartError(f"{self.path}: expected one image input and an output; not a headstart export")
        shape_in = [d.dim_value or None for d in inputs[0].type.tensor_type.shape.dim]
        shape_out = [d.dim_value or None for d in graph.output[0].type.tensor_type.shape.dim]
        if shape_in[1:] != [size, size, 3] or inputs[0].type.tensor_type.elem_type != TensorProto.UINT8:
            raise HeadstartError(
                f"{self.path}: input is {shape_in[1:]}, but its metadata says uint8 images of {size}×{size}×3"
            )
        if not shape_out or shape_out[-1] != n:
            raise HeadstartError(
                f"{self.path}: model outputs {shape_out[-1] if shape_out else 0} classes "
                f"but its metadata lists {n} labels"
            )

    def predict_arrays(self, crops: np.ndarray) -> np.ndarray:
        """Class probabilities from the exported graph."""
        return self._run(crops)

    def portable(self) -> PortableNetwork:
        """The file itself: Ray workers run it as it is."""
        return PortableNetwork(self.path, False, lambda probabilities, _: probabilities)
