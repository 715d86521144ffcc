"""TFLite through `litert-torch` (no TensorFlow), run by LiteRT's interpreter and by MediaPipe Tasks'
`ImageClassifier`; its int8 form has dynamic-range int8 weights (`ai-edge-quantizer`).

The file takes uint8 crops (1, S, S, 3), a static shape as MediaPipe needs, made as the metadata's
recipe says; it carries MediaPipe's image-classifier metadata (labels, raw 0-255 input), so that
`ImageClassifier` names headstart's classes. MediaPipe resizes whatever region it is given to
S x S itself (bilinear, no antialiasing): given headstart's crop box as its region of interest it
answers close to headstart, not equal (its resampling is not Pillow's); that is measured and stored.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ..registry import ExportFormat, ExportJob, Runtime, crop_recipe, register_export_format
from ._quiet import native_output_silenced

if TYPE_CHECKING:
    import numpy as np

    from ...preprocessing import Preprocessing

INSTALL = (
    "pip install 'litert-torch==0.10.0' 'ai-edge-litert==2.3.0' 'ai-edge-quantizer==0.10.0' 'mediapipe==1.2.2' "
    "'pydantic==2.11.10'"
)


def tflite_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The file in LiteRT's interpreter, one image at a time (it is converted with a batch of one)."""
    from ai_edge_litert.interpreter import Interpreter

    with native_output_silenced():
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


def file_tensors(path: Path) -> dict[str, dict]:
    """The file's input and output tensors (name, shape), as LiteRT reports them."""
    from ai_edge_litert.interpreter import Interpreter

    with native_output_silenced():
        interpreter = Interpreter(model_path=str(path))
    (given,), (output,) = interpreter.get_input_details(), interpreter.get_output_details()
    return {
        "input": {"name": given["name"], "shape": given["shape"].tolist()},
        "output": {"name": output["name"], "shape": output["shape"].tolist()},
    }


def with_signature_names(net):
    """The network behind the signature names users see: `images` in, `probabilities` out."""
    import torch

    class Named(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.net = net

        def forward(self, images):
            return {"probabilities": self.net(images)}

    return Named().eval()


def write_tflite(job: ExportJob, quantize: bool = False) -> None:
    """Convert with litert-torch (and quantise the weights to int8 if asked), add MediaPipe's
    metadata, and write the labels beside it too."""
    import torch

    from .tflite_metadata import with_image_classifier_metadata

    size = job.model.preprocessing.image_size
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = Path(tmp) / "plain.tflite"
        with native_output_silenced():  # the converter (and torchao, which it imports) narrates every pass
            import litert_torch

            images = torch.zeros(1, size, size, 3, dtype=torch.uint8)
            litert_torch.convert(with_signature_names(job.net), sample_kwargs={"images": images}).export(str(plain))
            if quantize:
                from ai_edge_quantizer import quantizer, recipe

                q = quantizer.Quantizer(str(plain))
                q.load_quantization_recipe(recipe.dynamic_wi8_afp32())
                q.quantize().export_model(str(Path(tmp) / "int8.tflite"))
                plain = Path(tmp) / "int8.tflite"
        description = (
            f"headstart {job.model.spec.name} classifier. Input: uint8 RGB crops (1, {size}, {size}, 3), "
            f"made as follows: {crop_recipe(size, job.model.preprocessing.resize_short)}"
        )
        job.target.write_bytes(with_image_classifier_metadata(plain.read_bytes(), job.model.classes, description))
    job.tensors = file_tensors(job.target)
    (job.target.parent / f"{job.target.name}.labels.txt").write_text("\n".join(job.model.classes) + "\n", "utf-8")


def recipe_crop(image: Path, preprocessing: Preprocessing) -> np.ndarray:
    """A crop made as the metadata's recipe says, from a full Pillow decode (EXIF orientation applied)."""
    import numpy as np
    from PIL import Image, ImageOps

    with Image.open(image) as im:
        return np.asarray(preprocessing.crop(ImageOps.exif_transpose(im).convert("RGB")))


def in_litert(path: Path, preprocessing: Preprocessing) -> Callable[[Path], np.ndarray]:
    """The file in LiteRT's interpreter on crops made by the recipe."""
    run = tflite_runner(path)
    return lambda image: run(recipe_crop(image, preprocessing)[None])[0]


def mediapipe_region(preprocessing: Preprocessing, width: int, height: int) -> tuple[float, float, float, float]:
    """The region of interest (left, top, right, bottom, fractions of the frame) that makes MediaPipe
    sample headstart's crop box where Pillow does.

    MediaPipe's ImageToTensor maps the region's corner onto the first sample (output pixel i reads
    the source at left + i * step), where Pillow reads pixel centres (left + (i + 0.5) * step - 0.5):
    the region is moved by half a step less half a pixel, which on hymenoptera's val photos turns
    98.7% top-1 agreement into 99.3%.
    """
    left, top, side = preprocessing.crop_box(width, height)
    shift = 0.5 * (side / preprocessing.image_size - 1)
    left, top = left + shift, top + shift
    return left / width, top / height, (left + side) / width, (top + side) / height


class InMediaPipe:
    """The file in MediaPipe Tasks' `ImageClassifier`, which decodes each image itself and resizes
    the region of interest it is given, here headstart's crop box (`mediapipe_region`); `close()`
    ends the classifier."""

    def __init__(self, path: Path, preprocessing: Preprocessing):
        from mediapipe.tasks.python.core.base_options import BaseOptions
        from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions

        self.preprocessing = preprocessing
        options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=-1)
        with native_output_silenced():
            self.classifier = ImageClassifier.create_from_options(options)

    def __call__(self, image: Path) -> np.ndarray:
        import numpy as np
        from mediapipe import Image
        from mediapipe.tasks.python.components.containers.rect import RectF
        from mediapipe.tasks.python.vision.core.image_processing_options import ImageProcessingOptions

        frame = Image.create_from_file(str(image))
        left, top, right, bottom = mediapipe_region(self.preprocessing, frame.width, frame.height)
        region = RectF(left=left, top=top, right=right, bottom=bottom)
        categories = self.classifier.classify(frame, ImageProcessingOptions(region_of_interest=region))
        categories = categories.classifications[0].categories
        scores = np.zeros(len(categories), np.float32)
        for category in categories:
            scores[category.index] = category.score
        return scores

    def close(self) -> None:
        """End the classifier (its graph's threads)."""
        self.classifier.close()


TFLITE_RUNTIMES = (
    Runtime("LiteRT", "Pillow, cropped by the recipe", in_litert, ("ai_edge_litert",)),
    Runtime("MediaPipe ImageClassifier", "its own decoder; region = the crop box", InMediaPipe, ("mediapipe",)),
)


NEEDS = ("litert_torch", "ai_edge_litert", "mediapipe")
register_export_format(
    ExportFormat(
        "tflite", ".tflite", "TFLite", "LiteRT (TensorFlow Lite), MediaPipe Tasks (labels inside)", write_tflite,
        tflite_runner, runtimes=TFLITE_RUNTIMES, requires=NEEDS, install=INSTALL,
    )
)  # fmt: skip
register_export_format(
    ExportFormat(
        "tflite-int8", ".int8.tflite", "int8 TFLite", "LiteRT, MediaPipe Tasks; dynamic-range int8 weights",
        partial(write_tflite, quantize=True), tflite_runner,
        exact=False, runtimes=TFLITE_RUNTIMES, requires=(*NEEDS, "ai_edge_quantizer"), install=INSTALL,
    )
)  # fmt: skip
