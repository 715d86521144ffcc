"""Deployment agreement: each whole-image export format in each runtime users ship to, on the
held-out images decoded by that runtime's usual image code, against `headstart predict`: top-1
agreement, the largest probability difference, exact ties, and per-image latency (decode, crop and
model, one image at a time, as an app runs it).

    python bench/deploy.py ../shared/datasets/hymenoptera

The same runtimes verify every export when it is written (`<file>.json`, "runtimes"); this script
prints them side by side, with latency, for the README. Below the table, the same measures for
headstart itself on harmless changes to its input (each photo re-saved as a quality-95 JPEG, the crop
box moved by half a pixel, bicubic for bilinear): how far any runtime whose decoding or resampling is
not headstart's own can be expected to drift on this model.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

import headstart
from headstart.export import EXPORT_FORMATS
from headstart.export.run import pytorch_answers

FORMATS = ("onnx", "onnx-int8", "tflite", "tflite-int8", "web")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="labelled image folder: a model is trained on it first")
    parser.add_argument("--backbone", default="mobilenet_v2")
    args = parser.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")

    clf = headstart.train(args.data, backbone=args.backbone, quiet=True)
    held = clf.held_out()
    images, split = held.paths, held.split
    expected = np.array([[p.probabilities[c] for c in clf.classes] for p in clf.predict(images)])
    print(f"{args.data}: {len(images)} held-out images ({split}), {os.cpu_count()} CPUs; reference: headstart predict")
    print(f"{'format':<12} {'runtime':<28} {'decoder':<40} {'top-1':>7} {'max Δp':>9} {'ties':>5} {'ms/img':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in FORMATS:
            fmt = EXPORT_FORMATS[name]
            path = clf.export(name, Path(tmp)).path
            for runtime in (r for r in fmt.runtimes if r.available()):
                run = None
                try:
                    run = runtime.run(path, clf.preprocessing)
                    run(images[0])  # warm up
                    rows, times = [], []
                    for image in images:
                        start = time.perf_counter()
                        rows.append(run(image))
                        times.append(time.perf_counter() - start)
                except Exception as e:  # a runtime that refuses the file is a row of the table too
                    print(f"{name:<12} {runtime.name:<28} {runtime.decoder:<40} can't run it: {type(e).__name__}")
                    continue
                finally:
                    getattr(run, "close", lambda: None)()
                row = agreement(np.stack(rows), expected)
                print(f"{name:<12} {runtime.name:<28} {runtime.decoder:<40} {row} {np.median(times) * 1e3:7.1f}")
    print("\nheadstart itself on changed input (the floor for a runtime that decodes or resamples its own way)")
    for change, crop in CHANGES.items():
        crops = np.stack([crop(image, clf.preprocessing) for image in images])
        print(f"{'':<12} {'headstart':<28} {change:<40} {agreement(pytorch_answers(clf.graph(), crops), expected)}")


def agreement(got: np.ndarray, expected: np.ndarray) -> str:
    """Top-1 agreement, largest probability difference and exact ties, as the table prints them."""
    ordered = np.sort(got, 1)
    ties = int(np.sum(ordered[:, -1] == ordered[:, -2]))
    return f"{np.mean(got.argmax(1) == expected.argmax(1)):7.1%} {np.abs(got - expected).max():9.2e} {ties:5d}"


def resaved_jpeg(image: Path, preprocessing) -> np.ndarray:
    """The crop of the photo after saving it once more as a quality-95 JPEG."""
    buffer = io.BytesIO()
    with Image.open(image) as im:
        ImageOps.exif_transpose(im).convert("RGB").save(buffer, "JPEG", quality=95)
    with Image.open(buffer) as im:
        return preprocessing(im.convert("RGB"))


def shifted_half_pixel(image: Path, preprocessing) -> np.ndarray:
    """The crop with its box moved right and down by half a source pixel."""
    with Image.open(image) as im:
        im = ImageOps.exif_transpose(im).convert("RGB")
        left, top, side = preprocessing.crop_box(*im.size)
        box = (left + 0.5, top + 0.5, left + side + 0.5, top + side + 0.5)
        return np.asarray(im.resize((preprocessing.image_size,) * 2, Image.Resampling.BILINEAR, box=box))


def bicubic(image: Path, preprocessing) -> np.ndarray:
    """The crop resampled bicubically (the recipe says bilinear)."""
    with Image.open(image) as im:
        return dataclasses.replace(preprocessing, interpolation="bicubic")(ImageOps.exif_transpose(im).convert("RGB"))


CHANGES = {
    "each photo re-saved as JPEG, quality 95": resaved_jpeg,
    "crop box moved by half a pixel": shifted_half_pixel,
    "bicubic resampling instead of bilinear": bicubic,
}


if __name__ == "__main__":
    main()
