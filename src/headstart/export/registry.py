"""The export formats, one `ExportFormat` each, declared once (as Ultralytics' `export_formats()`
table): `headstart export --format`'s choices and help, `headstart.load`'s dispatch on a file's
suffix, the studio's buttons and the README's table all read this registry.

A format is a writer (the model's network -> a file), a runner (that file in its own runtime: what
verifies it) and optionally a loader (the file back as a `Predictor`). Built-in formats live in
`formats/`, one module each; `register_export_format` adds one from anywhere.
"""

from __future__ import annotations

import importlib.util
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import HeadstartError
from ..registry import Registry

if TYPE_CHECKING:
    import numpy as np
    from torch import nn

    from ..inference.model import Model
    from ..inference.predictor import Predictor
    from ..preprocessing import Preprocessing

Runner = Callable[[Path], Callable[["np.ndarray"], "np.ndarray"]]  # file -> (uint8 crops -> probabilities)
# (file, the model's preprocessing) -> (an image file -> probabilities): a runtime as its users feed it
ImageRunner = Callable[[Path, "Preprocessing"], Callable[[Path], "np.ndarray"]]
PIXELS, CROPS = "pixels", "crops"  # what an exported graph takes: whole decoded images, or crops made already


@dataclass
class ExportJob:
    """What a writer gets: the network to write (uint8 crops in, probabilities out), where to,
    the model it comes from (labels, preprocessing) and, for quantised formats, calibration images."""

    net: nn.Module
    target: Path
    model: Model
    format: ExportFormat
    calibration: list[Path] = field(default_factory=list)
    tensors: dict[str, dict] = field(default_factory=dict)  # the file's own "input"/"output" names and shapes

    def metadata(self) -> dict:
        """What travels with the exported file (inside it, or in its JSON sidecar): labels,
        preprocessing, the input (and, for a crop input, the exact recipe) and the output."""
        model, size = self.model, self.model.preprocessing.image_size
        if self.format.input == PIXELS:
            given = {
                "name": "pixels",
                "dtype": "uint8",
                "shape": [1, "height", "width", 3],
                "layout": "one decoded RGB image of any size, (1, H, W, 3), EXIF orientation applied; the graph "
                "resizes and centre-crops it as headstart does, and normalises it",
            }
            batch = 1
        else:
            given = {
                "name": "images",
                "dtype": "uint8",
                "shape": ["N", size, size, 3],
                "layout": "NHWC RGB crops, made as `recipe` says (normalisation is inside the model)",
                "recipe": crop_recipe(model.preprocessing.image_size, model.preprocessing.resize_short),
            }
            batch = "N"
        output = {"name": "probabilities", "shape": [batch, len(model.classes)]}
        given |= self.tensors.get("input", {})
        output |= self.tensors.get("output", {})
        return {
            "format": self.format.name,
            "labels": model.classes,
            "backbone": model.spec.name,
            "preprocessing": model.preprocessing.to_dict(),
            "test_time_augmentation": model.tta,  # already inside the graph: run it on the plain crop
            "input": given,
            "output": output,
        }


def crop_recipe(image_size: int, resize_short: int) -> str:
    """How to make a crop input exactly as headstart does (`Preprocessing.crop_box` and `crop`), in words."""
    return (
        f"side = min(w, h) * {image_size} / {resize_short}; left = (w - side) / 2; top = (h - side) / 2 "
        "(fractional, not rounded); then one Pillow resize of that box: "
        f"image.resize(({image_size}, {image_size}), <interpolation>, box=(left, top, left + side, top + side)). "
        "Resizing the short side and cropping at whole pixels instead shifts the crop by up to half a pixel."
    )


@dataclass(frozen=True)
class Runtime:
    """A runtime users run a whole-image export in, the way they run it: decoding each image with
    that runtime's usual image code, feeding the pixels, reading the probabilities.

    Attributes:
        name: what it is called in tables ("OpenVINO").
        decoder: how it decodes images ("OpenCV imread, BGR -> RGB").
        run: the file in that runtime, as a function of an image file's path (given the model's
            preprocessing, for a runtime whose users crop, or pass a region, themselves); if that
            function has a `close()`, it is called when the verification is done.
        requires: modules it needs; a runtime not installed is left out of the verification.
        programs: programs it needs on PATH (a browser).
    """

    name: str
    decoder: str
    run: ImageRunner
    requires: tuple[str, ...] = ()
    programs: tuple[str, ...] = ()

    def available(self) -> bool:
        """Whether the runtime is installed."""
        return all(importlib.util.find_spec(module) is not None for module in self.requires) and all(
            shutil.which(program) for program in self.programs
        )


@dataclass(frozen=True)
class ExportFormat:
    """One export format: a row of the table (name, suffix, title, runtime, writer, runner), as
    Ultralytics' `export_formats()` rows are, with the options after it.

    Attributes:
        name: what `--format` calls it ("onnx").
        suffix: the file's suffix ("model.onnx"); `headstart.load` recognises files by it.
        title: a short display name ("ONNX"), for buttons and tables.
        runtime: what runs the file (for help and tables).
        write: writes `job.net` to `job.target` (importing its converter only when called).
        runner: the file in its runtime, as a function of uint8 crops: what verifies the export.
        load: the file back as a `Predictor` (None: headstart exports it, other runtimes run it).
        exact: an fp32 export must agree with PyTorch (top-1 on every image, |Δp| ≤ 1e-4) or is
            refused; a quantised one (False) is measured and reported.
        calibrates: the writer quantises and needs training images (`job.calibration`).
        input: what the written file takes: "pixels" (one decoded image of any size; the graph
            crops it) or "crops" (made already, as the metadata's recipe says).
        runtimes: the runtimes it is verified in on whole image files, each decoding and cropping
            them as its users do (those installed); for an exact "pixels" file the first (its own
            crop) decides whether the file is kept, the others are measured and stored.
        requires: modules the writer and runner need; when one is missing the format is listed as
            not installed, and exporting says `install`.
        install: how to install them.
    """

    name: str
    suffix: str
    title: str
    runtime: str
    write: Callable[[ExportJob], None]
    runner: Runner
    load: Callable[[Path], Predictor] | None = None
    exact: bool = True
    calibrates: bool = False
    input: str = CROPS
    runtimes: tuple[Runtime, ...] = ()
    requires: tuple[str, ...] = ()
    install: str = ""

    def available(self) -> bool:
        """Whether what the format needs is installed."""
        return all(importlib.util.find_spec(module) is not None for module in self.requires)

    def check_available(self) -> None:
        """A one-line error saying what to install, unless `available()`."""
        if not self.available():
            raise HeadstartError(f"{self.name} export needs {', '.join(self.requires)}: {self.install}")

    def default_path(self) -> Path:
        """`model<suffix>`, the file written when no path is given."""
        return Path(f"model{self.suffix}")

    def describe(self) -> dict:
        """JSON-shaped, for the studio's page."""
        shown = ("name", "title", "suffix", "runtime", "exact", "input", "install")
        return {key: getattr(self, key) for key in shown} | {"available": self.available()}


# Listed by name: a built-in module imported directly (a doctest, a plugin) registers before the
# others, so registration order is not stable.
EXPORT_FORMATS: Registry[ExportFormat] = Registry(
    "export format", builtins=f"{__package__}.formats", order=lambda fmt: fmt.name
)


def register_export_format(fmt: ExportFormat, *, replace: bool = False) -> ExportFormat:
    """Add an export format: `headstart export --format`, `Classifier.export`, `headstart.load`
    (when it has a loader) and the studio see it."""
    return EXPORT_FORMATS.register(fmt, replace=replace)


def format_of_path(path: str | Path) -> ExportFormat | None:
    """The format a file's name says it is in (the longest matching suffix), or None."""
    name = Path(path).name.lower()
    matches = [fmt for fmt in EXPORT_FORMATS.values() if name.endswith(fmt.suffix.lower())]
    return max(matches, key=lambda fmt: len(fmt.suffix), default=None)
