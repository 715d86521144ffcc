"""Writing an export and checking it: the network in the format's file, run in the format's own
runtime on real held-out images, compared with the PyTorch model. The exported graph takes uint8
RGB crops (N, size, size, 3), resized and centre-cropped as the model's preprocessing says, and
returns class probabilities."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Sequence
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
from .registry import EXPORT_FORMATS, PIXELS, ExportJob, Runtime

if TYPE_CHECKING:
    from torch import nn

FP32_TOLERANCE = 1e-4  # largest probability difference an fp32 export may show on headstart's crops
# On whole images, each decoded by a runtime's usual image code and cropped by the graph itself:
PIXEL_TOLERANCE, PIXEL_AGREEMENT = 0.02, 0.995


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
        for name, result in v.get("runtimes", {}).items():
            if "error" in result:
                text += f"\n  {name}, whole images: can't run it ({result['error'][:120]})"
            else:
                text += (
                    f"\n  {name}, whole images ({result['decoder']}): top-1 {result['top1_agreement']:.1%}, "
                    f"max |Δp| {result['max_abs_diff']:.2e}"
                )
        return text


def export(
    model: Model,
    fmt: str = "onnx",
    path: str | Path | None = None,
    *,
    images: LabelledImages,
    calibration_images: list[Path] | None = None,
    overwrite: bool = False,
    verify_images: int | None = None,
    events: EventBus | None = None,
) -> ExportResult:
    """Write `model` in format `fmt`, verify it against PyTorch, and write `<file>.json` beside it.

    Args:
        model: the model to export.
        fmt: the name of a registered format (`headstart.export.EXPORT_FORMATS`).
        path: the file (or a folder for it); default `model<suffix>` here.
        images: labelled held-out images to verify on (all of them, or the first `verify_images`).
        calibration_images: training images a quantising format calibrates on.
        overwrite: replace an existing file.
        events: receives the "export" stage's events.

    Returns:
        The file written and its verification (top-1 agreement, max probability difference,
        accuracy of both), on headstart's crops and, for a file that takes whole images, in each
        installed runtime on the images decoded its own way and cropped by the file itself. An
        exact (fp32) export that disagrees is deleted and reported as an error.

    Example:
        >>> clf = headstart.train(ants_bees)
        >>> result = export(clf, "torch-export", tmp / "ants.pt2", images=clf.held_out())
        >>> result.path.name, result.verification["images"], result.verification["top1_agreement"]
        ('ants.pt2', 12, 1.0)
    """
    form = EXPORT_FORMATS.lookup(fmt)
    form.check_available()
    target = Path(path) if path else form.default_path()
    if target.is_dir() and not is_export_of(target, form.name):  # a folder to put it in, not an earlier export
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
            paths, labels = images.paths[:n], images.labels[:n]
            crops, ok = held_out_crops(paths, model.preprocessing)
            expected = pytorch_answers(net, crops)
            got = run_batched(form.runner(staged), crops)
            verification = comparison(expected, got, np.array(labels)[ok], images.split)
            if form.runtimes:
                readable = [paths[i] for i in ok]
                verification["runtimes"] = verify_in_runtimes(
                    expected, form.runtimes, staged, readable, model.preprocessing
                )
            progress.advance()
        if form.exact and (verification["top1_agreement"] < 1.0 or verification["max_abs_diff"] > FP32_TOLERANCE):
            raise HeadstartError(f"{fmt} export disagrees with the PyTorch model ({verification}); nothing was written")
        # A whole-image file's first runtime is its own (the crop in onnxruntime, the page in Chromium).
        name, first = next(iter(verification.get("runtimes", {}).items()), (None, None))
        if form.exact and form.input == PIXELS and first is not None and not agrees_on_pixels(first):
            if "error" in first:
                raise HeadstartError(f"{fmt} export can't be checked in {name} ({first['error']}); nothing was written")
            raise HeadstartError(f"{fmt} export's own crop disagrees with headstart's ({first}); nothing was written")
        sidecar = job.metadata() | {"verification": verification}
        (staging / f"{target.name}.json").write_text(json.dumps(sidecar, indent=2, ensure_ascii=False) + "\n", "utf-8")
        for item in staging.iterdir():
            os.chmod(item, default_mode(directory=item.is_dir()))
            destination = target.parent / item.name
            if item.is_dir() and destination.is_dir() and not destination.is_symlink():
                shutil.rmtree(destination)  # a folder export (web) replaced, as --force asked
            os.replace(item, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ExportResult(target, fmt, verification)


def is_export_of(path: Path, fmt: str) -> bool:
    """Whether `path` is an earlier export in `fmt` (its `<name>.json` sidecar says so): a folder
    export (web) given again is that export, replaced with --force, not a folder to write into."""
    try:
        return json.loads(path.with_name(path.name + ".json").read_text("utf-8")).get("format") == fmt
    except (OSError, ValueError, AttributeError):
        return False


def agrees_on_pixels(result: dict) -> bool:
    """Whether a whole-image run agrees with headstart as closely as an fp32 export must."""
    return "error" not in result and (
        result["top1_agreement"] >= PIXEL_AGREEMENT and result["max_abs_diff"] <= PIXEL_TOLERANCE
    )


def pytorch_answers(net: nn.Module, crops: np.ndarray) -> np.ndarray:
    """The PyTorch model's probabilities for headstart's crops: what every export is held to."""
    import torch

    with torch.inference_mode():
        return run_batched(lambda b: net(torch.from_numpy(b)).numpy(), crops)


def verify_in_runtimes(
    expected: np.ndarray, runtimes: Sequence[Runtime], path: Path, images: list[Path], preprocessing: Preprocessing
) -> dict:
    """The file on whole images in each installed runtime, as users run it (each runtime's own image
    decoding, the file's own crop), against `expected` (PyTorch on headstart's crops of `images`);
    a runtime that can't load or run the file is recorded with its error."""
    results = {}
    for runtime in (r for r in runtimes if r.available()):
        run = None
        try:
            run = runtime.run(path, preprocessing)
            got = np.stack([run(image) for image in images])
        except Exception as e:  # a runtime's own exception types: it refuses the file or an operator
            reason = " ".join(str(e).split())[:300]  # runtimes raise multi-line reports
            results[runtime.name] = {"decoder": runtime.decoder, "error": f"{type(e).__name__}: {reason}"}
            continue
        finally:
            getattr(run, "close", lambda: None)()  # a browser, a server
        results[runtime.name] = {
            "decoder": runtime.decoder,
            "images": len(images),
            "top1_agreement": float(np.mean(expected.argmax(1) == got.argmax(1))),
            "max_abs_diff": float(np.abs(expected - got).max()),
            "ties": int(np.sum(np.sort(got, 1)[:, -1] == np.sort(got, 1)[:, -2])) if got.shape[1] > 1 else 0,
        }
    return results


def verify(
    net: nn.Module,
    runner: Callable[[np.ndarray], np.ndarray],
    images: list[Path],
    labels: np.ndarray,
    preprocessing: Preprocessing,
    split: str,
) -> dict:
    """Run the exported model and PyTorch on the same real images and compare."""
    crops, ok = held_out_crops(images, preprocessing)
    return comparison(pytorch_answers(net, crops), run_batched(runner, crops), np.array(labels)[ok], split)


def held_out_crops(images: list[Path], preprocessing: Preprocessing) -> tuple[np.ndarray, list[int]]:
    """headstart's crops of the readable held-out images, and their indices; none is an error."""
    crops, ok = load_crops(images, preprocessing)
    if not len(crops):
        raise HeadstartError("no held-out images to verify the export on; pass --data with the training folder")
    return crops, ok


def comparison(a: np.ndarray, b: np.ndarray, y: np.ndarray, split: str) -> dict:
    """PyTorch's probabilities `a` against the export's `b` on images of true classes `y`."""
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
