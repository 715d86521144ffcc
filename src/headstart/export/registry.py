"""The export formats, one `ExportFormat` each, declared once (as Ultralytics' `export_formats()`
table): `headstart export --format`'s choices and help, `headstart.load`'s dispatch on a file's
suffix, the studio's buttons and the README's table all read this registry.

A format is a writer (the model's network -> a file), a runner (that file in its own runtime: what
verifies it) and optionally a loader (the file back as a `Predictor`). Built-in formats live in
`formats/`, one module each; `register_export_format` adds one from anywhere.
"""

from __future__ import annotations

import importlib.util
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

Runner = Callable[[Path], Callable[["np.ndarray"], "np.ndarray"]]  # file -> (uint8 crops -> probabilities)


@dataclass
class ExportJob:
    """What a writer gets: the network to write (uint8 crops in, probabilities out), where to,
    the model it comes from (labels, preprocessing) and, for quantised formats, calibration images."""

    net: nn.Module
    target: Path
    model: Model
    format: ExportFormat
    calibration: list[Path] = field(default_factory=list)

    def metadata(self) -> dict:
        """What travels with the exported file (inside it, or in its JSON sidecar): labels,
        preprocessing, the input and the output."""
        model, size = self.model, self.model.preprocessing.image_size
        return {
            "format": self.format.name,
            "labels": model.classes,
            "backbone": model.spec.name,
            "preprocessing": model.preprocessing.to_dict(),
            "test_time_augmentation": model.tta,  # already inside the graph: run it on the plain crop
            "input": {
                "name": "images",
                "dtype": "uint8",
                "shape": ["N", size, size, 3],
                "layout": "NHWC RGB, resized and centre-cropped as in preprocessing "
                "(normalisation is inside the model)",
            },
            "output": {"name": "probabilities", "shape": ["N", len(model.classes)]},
        }


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
        shown = ("name", "title", "suffix", "runtime", "exact", "install")
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
