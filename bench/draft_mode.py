"""How far JPEG draft mode (DCT scaling while decoding) moves the model's answers, and what it saves:
each image decoded with draft mode asked to keep 1x, 2x or 4x the 256 px short side, against the
full decode (what an exported model given the whole photo sees).

    python bench/draft_mode.py ../shared/datasets/alpaca
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

import headstart
from headstart.inference.exported import crop_network
from headstart.inference.runtime import ort_session


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path, help="labelled image folder: a model is trained on it first")
    args = parser.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")

    clf = headstart.train(args.data, quiet=True)
    preprocessing = clf.preprocessing
    files = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    with tempfile.TemporaryDirectory() as tmp:
        session = ort_session(crop_network(clf.export("onnx-crops", tmp).path))

    def crops(keep: int | None) -> tuple[np.ndarray, float]:
        start, out = time.perf_counter(), []
        for path in files:
            with Image.open(path) as image:
                if keep:
                    image.draft("RGB", (keep, keep))
                out.append(preprocessing(ImageOps.exif_transpose(image).convert("RGB")))
        return np.stack(out), time.perf_counter() - start

    def probabilities(batch: np.ndarray) -> np.ndarray:
        return np.concatenate([session.run(None, {"images": batch[i : i + 32]})[0] for i in range(0, len(batch), 32)])

    full, seconds = crops(None)
    reference = probabilities(full)
    print(f"{args.data}: {len(files)} JPEGs; full decode {seconds:.2f} s")
    print(f"{'draft keeps':>12} {'decode s':>9} {'max Δp':>9} {'top-1':>7}")
    for factor in (1, 2, 4):
        batch, seconds = crops(factor * preprocessing.resize_short)
        p = probabilities(batch)
        agree = np.mean(p.argmax(1) == reference.argmax(1))
        print(f"{factor:>11}x {seconds:9.2f} {np.abs(p - reference).max():9.2e} {agree:7.1%}")


if __name__ == "__main__":
    main()
