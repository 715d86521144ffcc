"""A model headstart exported to ONNX, run by onnxruntime alone (no PyTorch network is built)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import HeadstartError
from ..preprocessing import Preprocessing
from .predictor import Predictor
from .runtime import onnx_runner

METADATA_KEY = "headstart"  # the ONNX metadata property holding labels and preprocessing


class ExportedModel(Predictor):
    """An ONNX file exported by headstart, with its labels: `headstart.load("model.onnx")`.

    Refuses a file headstart did not write, or whose labels do not fit its outputs.
    """

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
            raise HeadstartError(
                f"{self.path}: model outputs {width} classes but its metadata lists {len(self.classes)} labels"
            )
        self._run = onnx_runner(self.path)

    def predict_arrays(self, crops: np.ndarray) -> np.ndarray:
        return self._run(crops)
