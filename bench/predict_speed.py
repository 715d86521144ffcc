"""Prediction speed: single-image latency (p50/p99) and batch throughput of one model run by
PyTorch eager, onnxruntime fp32, onnxruntime int8 and LiteRT (when installed), with the accuracy
of each on the held-out images and its top-1 agreement with PyTorch on every image of the folder.

    python bench/predict_speed.py ../shared/datasets/alpaca

Latency is for the model on a 224 px uint8 crop (MobileNetV2 + head, normalisation included);
decoding is measured separately by bench/train_speed.py.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import headstart
from headstart.data.dataset import scan
from headstart.export.formats.tflite import tflite_runner
from headstart.inference.exported import crop_network
from headstart.inference.pipeline import load_crops
from headstart.inference.runtime import ort_session, run_batched

ROUNDS = 3


def crop_runner(path: Path):
    """An ONNX export's crop network (the file minus its crop) in onnxruntime, on batches of crops.
    Model-only serving: onnxruntime's workers may spin (lower latency; headstart's own decode
    pipeline turns spinning off to leave the cores to decoding)."""
    session = ort_session(crop_network(path), spinning=True)
    return lambda batch: session.run(None, {"images": batch})[0]


def latency_ms(run, crop: np.ndarray, seconds: float = 4.0) -> tuple[float, float]:
    for _ in range(10):
        run(crop)
    times = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end or len(times) < 30:
        start = time.perf_counter()
        run(crop)
        times.append(time.perf_counter() - start)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


def throughput(run, batch: np.ndarray, seconds: float = 4.0) -> float:
    run(batch)
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run(batch)
        n += len(batch)
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "data", type=Path, help="labelled image folder: a model is trained on it first (cached features)"
    )
    parser.add_argument("--backbone", default="mobilenet_v2")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")

    clf = headstart.train(args.data, backbone=args.backbone, quiet=True)
    held = clf.held_out()
    images, labels = held.paths, held.labels
    held_out = {str(p.resolve()): y for p, y in zip(images, labels)}
    for rel, label in clf.record.data.held_out.get("val", []):  # val too: more images, same honesty
        held_out.setdefault(str((Path(clf.record.data.root) / rel).resolve()), clf.classes.index(label))
    everything = [s.path for s in scan(args.data, 0, 0).samples]
    crops, ok = load_crops(everything, clf.preprocessing)
    paths = [str(everything[i].resolve()) for i in ok]
    mask = np.array([p in held_out for p in paths])
    y = np.array([held_out[p] for p in paths if p in held_out])

    net = clf.graph()
    torch.set_num_threads(os.cpu_count())

    def eager(batch):
        with torch.inference_mode():
            return net(torch.from_numpy(batch)).numpy()

    variants = {"PyTorch eager fp32": eager}
    with tempfile.TemporaryDirectory() as tmp:
        variants["onnxruntime fp32"] = crop_runner(clf.export("onnx", Path(tmp) / "m.onnx").path)
        variants["onnxruntime int8 (static)"] = crop_runner(clf.export("onnx-int8", Path(tmp) / "m.int8.onnx").path)
        if importlib.util.find_spec("litert_torch"):
            variants["LiteRT fp32"] = tflite_runner(clf.export("tflite", Path(tmp) / "m.tflite").path)
            variants["LiteRT int8 (dynamic)"] = tflite_runner(
                clf.export("tflite-int8", Path(tmp) / "m.int8.tflite").path
            )

        print(f"{args.data}: {len(paths)} images, {mask.sum()} held out; {os.cpu_count()} CPUs; batch {args.batch}")
        print(f"{'runtime':<30} {'p50 ms':>7} {'p99 ms':>7} {'img/s':>7} {'held-out acc':>13} {'agree w/ torch':>15}")
        reference = run_batched(eager, crops)
        # Timings interleave the runtimes over several rounds and keep the median of each, so a
        # passing disturbance on the machine does not land on one runtime only.
        rounds = {name: [] for name in variants}
        for _ in range(ROUNDS):
            for name, run in variants.items():
                rounds[name].append(
                    (*latency_ms(run, crops[:1], seconds=1.5), throughput(run, crops[: args.batch], seconds=1.5))
                )
        results = {}
        for name, run in variants.items():
            probs = reference if run is eager else run_batched(run, crops)
            p50, p99, tput = np.median(np.array(rounds[name]), axis=0)
            acc = float(np.mean(probs[mask].argmax(1) == y))
            agree = float(np.mean(probs.argmax(1) == reference.argmax(1)))
            results[name] = (p50, tput, acc)
            print(f"{name:<30} {p50:7.2f} {p99:7.2f} {tput:7.0f} {acc:13.3f} {agree:15.3f}")
    fp32, int8 = results["onnxruntime fp32"], results["onnxruntime int8 (static)"]
    print(
        f"onnxruntime int8 vs fp32: latency {fp32[0] / int8[0]:.2f}x, throughput {int8[1] / fp32[1]:.2f}x, "
        f"accuracy change {100 * (int8[2] - fp32[2]):+.1f} points"
    )


if __name__ == "__main__":
    main()
