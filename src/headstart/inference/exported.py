"""A model headstart exported to ONNX, run by onnxruntime alone (no PyTorch network is built).

A `pixels` file (the crop inside the graph) is run through its crop network, which the file holds
under its input's name: `predict` decodes and crops as every predictor does, and batches."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from ..errors import HeadstartError
from ..fsutil import atomic_write_bytes, cache_file
from ..preprocessing import Preprocessing
from ..schema import ExportMeta, parse_json, validate
from .predictor import PortableNetwork, Predictor
from .runtime import ort_session

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
        self.takes_pixels = takes_pixels(model)
        if self.takes_pixels:
            try:
                model = crop_network_of(model)
            except Exception as e:  # onnx's extractor: no crop network under the expected name
                raise HeadstartError(f"{self.path}: no crop network inside ({type(e).__name__})") from None
        self._check_signature(model)
        try:
            session = ort_session(model.SerializeToString())
        except Exception as e:  # onnxruntime's own exception types: an invalid or unsupported graph
            raise HeadstartError(f"{self.path}: onnxruntime can't run it ({type(e).__name__})") from None
        self._run = lambda batch: session.run(None, {"images": batch})[0]

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
        """The crop network: the file itself, or for a pixels file its crop network in the cache."""
        path = self.path
        if self.takes_pixels:
            data = crop_network(self.path)
            path = cache_file("onnx", f"crops-{hashlib.sha256(data).hexdigest()[:16]}.onnx")
            if not path.exists():
                atomic_write_bytes(path, data)
        return PortableNetwork(path, False, lambda probabilities, _: probabilities)


CROP_TENSOR = "crop"  # in a pixels file, the crop network's input (export/formats/onnx.py names it)


def crop_network_of(model):
    """The crop network inside a pixels file (`crop` -> `probabilities`), its input named `images`
    again with a batch axis: the same operators and weights, batched."""
    import onnx

    network = onnx.utils.Extractor(model).extract_model([CROP_TENSOR], [model.graph.output[0].name])
    for node in network.graph.node:
        node.input[:] = ["images" if name == CROP_TENSOR else name for name in node.input]
    image = network.graph.input[0]
    image.name = "images"
    image.type.tensor_type.shape.dim[0].dim_param = "batch"
    output = network.graph.output[0].type.tensor_type.shape.dim[0]
    output.dim_param = "batch"
    network.metadata_props.extend(model.metadata_props)
    return network


def crop_network(path: Path) -> bytes:
    """The crop network of an exported file (a crops file is one already), serialised."""
    import onnx

    model = onnx.load(str(path))
    return (crop_network_of(model) if takes_pixels(model) else model).SerializeToString()


def takes_pixels(model) -> bool:
    """Whether an exported ONNX model takes whole images (its crop inside) rather than crops."""
    return [i.name for i in model.graph.input] == ["pixels"]
