"""Writing an export and checking it: the network in the format's file, run in the format's own
runtime on real held-out images, compared with the PyTorch model. The exported graph takes uint8
RGB crops (N, size, size, 3), resized and centre-cropped as the model's preprocessing says, and
returns class probabilities."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.labelled import LabelledImages
from ..errors import HeadstartError
from ..events import EventBus, as_bus
from ..fsutil import default_mode, remove_stale_staging, staging_folder
from ..inference.model import Model
from ..inference.pipeline import load_crops
from ..inference.runtime import run_batched
from ..preprocessing import Preprocessing
from .registry import EXPORT_FORMATS, ExportJob

if TYPE_CHECKING:
    from torch import nn

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
        fmt: the name of a registered format (`headstart.export.EXPORT_FORMATS`).
        path: the file (or a folder for it); default `model<suffix>` here.
        images: labelled held-out images to verify on (the first `verify_images`).
        calibration_images: training images a quantising format calibrates on.
        overwrite: replace an existing file.
        events: receives the "export" stage's events.

    Returns:
        The file written and its verification (top-1 agreement, max probability difference,
        accuracy of both). An exact (fp32) export that disagrees is deleted and reported as an error.

    Example:
        >>> clf = headstart.train(ants_bees)
        >>> result = export(clf, "torch-export", tmp / "ants.pt2", images=clf.held_out())
        >>> result.path.name, result.verification["images"], result.verification["top1_agreement"]
        ('ants.pt2', 12, 1.0)
    """
    form = EXPORT_FORMATS.lookup(fmt)
    form.check_available()
    target = Path(path) if path else form.default_path()
    if target.is_dir():
        target = target / form.default_path()
    if target.exists() and not overwrite:
        raise HeadstartError(f"{target}: already exists; pass --force to overwrite it")
    target.parent.mkdir(parents=True, exist_ok=True)

    net = model.graph()
    remove_stale_staging(target)
    staging = staging_folder(target)
    staged = staging / target.name
    try:
        with as_bus(events).stage("export", 2, "steps", f"Exporting {fmt}") as progress:
            job = ExportJob(net, staged, model, form, list(calibration_images or []))
            form.write(job)
            progress.advance()
            n = verify_images
            verification = verify(
                net, form.runner(staged), images.paths[:n], images.labels[:n], model.preprocessing, images.split
            )
            progress.advance()
        if form.exact and (verification["top1_agreement"] < 1.0 or verification["max_abs_diff"] > FP32_TOLERANCE):
            raise HeadstartError(f"{fmt} export disagrees with the PyTorch model ({verification}); nothing was written")
        sidecar = job.metadata() | {"verification": verification}
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
    import torch

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
