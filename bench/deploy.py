"""Deployment agreement: each whole-image export format in each runtime users ship to, on the
held-out images decoded by that runtime's usual image code, against `headstart predict`: top-1
agreement, the largest probability difference, exact ties, and per-image latency (decode, crop and
model, one image at a time, as an app runs it).

    python bench/deploy.py ../shared/datasets/hymenoptera

The same runtimes verify every export when it is written (`<file>.json`, "runtimes"); this script
prints them side by side, with latency, for the README.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import headstart
from headstart.export import EXPORT_FORMATS

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
                got = np.stack(rows)
                agree = np.mean(got.argmax(1) == expected.argmax(1))
                ordered = np.sort(got, 1)
                ties = int(np.sum(ordered[:, -1] == ordered[:, -2]))
                print(
                    f"{name:<12} {runtime.name:<28} {runtime.decoder:<40} {agree:7.1%} "
                    f"{np.abs(got - expected).max():9.2e} {ties:5d} {np.median(times) * 1e3:7.1f}"
                )


if __name__ == "__main__":
    main()
