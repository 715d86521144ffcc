"""Accuracy of each backbone, the feature ensemble and flip test-time augmentation, on every shared
dataset, over several seeds, in one run:

    python bench/accuracy.py ../shared/datasets [--seeds 3] [--backbones mobilenet_v2,efficientnet_lite0,...]

The protocol is `headstart train`'s default: the dataset's own splits (else 80/10/10, redrawn per
seed), the default head trained on the training split's cached features with early stopping on the
validation split, accuracy and macro F1 on the test split (the validation split when the dataset
ships only train/val). "+flip" averages the probabilities of the image and its mirror image.
"ensemble" concatenates the features of every backbone listed. Extraction speed (cold, no cache)
and single-image latency (onnxruntime, decoded crop in, features out) are timed on 64 images.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from PIL import ImageOps
from sklearn.metrics import f1_score

from headstart.backbones import BACKBONES, get_backbone
from headstart.data.dataset import scan
from headstart.hparams import HParams
from headstart.inference.features import FeatureExtractor
from headstart.training.head import fit_head


def features(extractor: FeatureExtractor, paths: list[Path], flip: bool) -> tuple[np.ndarray, np.ndarray]:
    """(features, indices of the readable paths), of the mirror images if `flip`."""
    preprocessing = extractor.preprocessing
    transform = (lambda image, _: preprocessing(ImageOps.mirror(image))) if flip else None
    extraction = extractor.extract(paths, transform=transform, cache_tag="-mirror" if flip else "")
    return extraction.features, np.asarray(extraction.ok)


def speed(extractor: FeatureExtractor, paths: list[Path]) -> tuple[float, float]:
    """(images/s extracting without the cache, ms for one decoded image through the backbone)."""
    extractor.embed(np.zeros((1, *[extractor.preprocessing.image_size] * 2, 3), np.uint8))  # warm up
    started = time.perf_counter()
    extractor.extract(paths, use_cache=False)
    rate = len(paths) / (time.perf_counter() - started)
    crop = np.random.default_rng(0).integers(0, 255, (1, *[extractor.preprocessing.image_size] * 2, 3), np.uint8)
    times = []
    for _ in range(30):
        started = time.perf_counter()
        extractor.embed(crop)
        times.append(time.perf_counter() - started)
    return rate, 1000 * float(np.median(times))


def split_arrays(dataset, row_of: dict, readable: set, tables: list) -> dict[str, np.ndarray]:
    """Per split, the features of its readable images: each table's, side by side."""
    out = {}
    for split in ("train", "val", "test"):
        rows = [row_of[s.path] for s in dataset.split(split) if row_of[s.path] in readable]
        if rows:
            out[split] = np.concatenate([f[np.searchsorted(ok, rows)] for f, ok in tables], axis=1)
    return out


def evaluate(x: dict, y: dict, eval_split: str, seed: int, mirror: dict | None) -> tuple[float, float]:
    classes = int(y["train"].max()) + 1
    head, _ = fit_head(x["train"], y["train"], x.get("val"), y.get("val"), classes, HParams(seed=seed))
    with torch.no_grad():
        p = torch.softmax(head(torch.from_numpy(x[eval_split])), 1).numpy()
        if mirror is not None:
            p = (p + torch.softmax(head(torch.from_numpy(mirror[eval_split])), 1).numpy()) / 2
    predicted = p.argmax(1)
    return float((predicted == y[eval_split]).mean()), float(f1_score(y[eval_split], predicted, average="macro"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder of datasets (../shared/datasets)")
    parser.add_argument("--datasets", default="hymenoptera,alpaca,imagewoof-320-sub")
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    names = args.backbones.split(",")
    print(f"{'dataset':<18}{'model':<34}{'accuracy':>17}{'macro F1':>17}{'img/s':>8}{'ms/img':>8}")
    for dataset_name in args.datasets.split(","):
        data = args.root / dataset_name
        extractors = {name: FeatureExtractor(get_backbone(name)) for name in names}
        paths = [s.path for s in scan(data).samples]
        timing = {name: speed(e, paths[:64]) for name, e in extractors.items()}
        plain = {name: features(e, paths, False) for name, e in extractors.items()}
        mirrored = {name: features(e, paths, True) for name, e in extractors.items()}
        readable = set.intersection(*(set(ok.tolist()) for _, ok in plain.values()))
        results: dict[str, list[tuple[float, float]]] = {}
        for seed in range(args.seeds):
            dataset = scan(data, seed=seed)
            row_of = {p: i for i, p in enumerate(paths)}
            eval_split = "test" if dataset.split("test") else "val"

            labels = {
                split: np.array([s.label for s in dataset.split(split) if row_of[s.path] in readable])
                for split in ("train", "val", "test")
                if dataset.split(split)
            }
            for model in [*names, "ensemble"] if len(names) > 1 else names:
                chosen = names if model == "ensemble" else [model]
                x = split_arrays(dataset, row_of, readable, [plain[n] for n in chosen])
                xm = split_arrays(dataset, row_of, readable, [mirrored[n] for n in chosen])
                results.setdefault(model, []).append(evaluate(x, labels, eval_split, seed, None))
                results.setdefault(f"{model} +flip", []).append(evaluate(x, labels, eval_split, seed, xm))
        for model, scores in results.items():
            acc, f1 = np.array(scores).T
            base = model.removesuffix(" +flip")
            rate, ms = (
                timing[base]
                if base in timing
                else (
                    1 / sum(1 / timing[n][0] for n in names),
                    sum(timing[n][1] for n in names),
                )
            )
            if model.endswith("+flip"):
                rate, ms = rate / 2, ms * 2
            label = model.replace("ensemble", f"ensemble of {len(names)}")
            print(
                f"{dataset_name:<18}{label:<34}{acc.mean():>9.4f} ± {acc.std():.4f}"
                f"{f1.mean():>9.4f} ± {f1.std():.4f}{rate:>8.0f}{ms:>8.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
