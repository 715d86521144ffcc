"""TFLite through `litert-torch` (no TensorFlow), run by LiteRT's interpreter; its int8 form has
dynamic-range int8 weights (`ai-edge-quantizer`). An optional extra: `pip install -e '.[tflite]'`."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..registry import ExportFormat, ExportJob, register_export_format

if TYPE_CHECKING:
    import numpy as np

INSTALL = "pip install 'litert-torch==0.10.0' 'ai-edge-litert==2.3.0' 'ai-edge-quantizer==0.10.0'"


def tflite_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The file in LiteRT's interpreter, one image at a time (it is converted with a batch of one)."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=os.cpu_count())
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]

    def run(batch: np.ndarray) -> np.ndarray:
        import numpy as np

        rows = []
        for image in batch:
            interpreter.set_tensor(inp["index"], image[None].astype(inp["dtype"]))
            interpreter.invoke()
            rows.append(interpreter.get_tensor(out["index"])[0])
        return np.stack(rows)

    return run


def write_tflite(job: ExportJob, quantize: bool = False) -> None:
    """Convert with litert-torch (and quantise the weights to int8 if asked); labels beside it."""
    import litert_torch
    import torch

    size = job.model.preprocessing.image_size
    # The converter narrates every pass; keep it for an error message, not for the user's terminal.
    log = io.StringIO()
    with warnings.catch_warnings(), contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        warnings.simplefilter("ignore")
        edge = litert_torch.convert(job.net.eval(), (torch.zeros(1, size, size, 3, dtype=torch.uint8),))
        if quantize:
            from ai_edge_quantizer import quantizer, recipe

            with tempfile.TemporaryDirectory() as tmp:
                fp32 = Path(tmp) / "fp32.tflite"
                edge.export(str(fp32))
                q = quantizer.Quantizer(str(fp32))
                q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
                q.quantize().export_model(str(job.target))
        else:
            edge.export(str(job.target))
    (job.target.parent / f"{job.target.name}.labels.txt").write_text("\n".join(job.model.classes) + "\n", "utf-8")


NEEDS = ("litert_torch", "ai_edge_litert")
register_export_format(
    ExportFormat(
        "tflite", ".tflite", "TFLite", "LiteRT (TensorFlow Lite)", write_tflite, tflite_runner,
        requires=NEEDS, install=INSTALL,
    )
)  # fmt: skip
register_export_format(
    ExportFormat(
        "tflite-int8", ".int8.tflite", "int8 TFLite", "LiteRT, dynamic-range int8 weights",
        partial(write_tflite, quantize=True), tflite_runner,
        exact=False, requires=(*NEEDS, "ai_edge_quantizer"), install=INSTALL,
    )
)  # fmt: skip
