"""Accuracy of every backbone and the feature ensemble, with and without flip test-time
augmentation, under each head, on every shared dataset, over several seeds, in one run:

    python bench/accuracy.py ../shared/datasets [--seeds 3] [--backbones mobilenet_v2,...] [--heads lbfgs,adamw]

The protocol is `headstart train`'s: the dataset's own splits (else 80/10/10, redrawn per seed),
features from headstart's own extractors (cached; "+flip" is `--tta flip`: each image's features
averaged with its mirror image's), the head trained on the training split and selected on the
validation split, accuracy and macro F1 on the test split (the validation split when the dataset
ships only train/val). The heads: "lbfgs", headstart's default (softmax regression, L2 strength
picked on validation loss along a path); "adamw", `--solver adamw` (dropout + linear, mini-batches,
early stopping on validation loss; the default before the speed work); "logreg", scikit-learn's
standardised features and L-BFGS logistic regression with C picked by 3-fold cross-validation.
Extraction speed (no cache) and single-image latency (onnxruntime, one decoded crop through
the backbone graph) are timed on 64 images of each dataset.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegressionCV
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from headstart.backbones import BACKBONES, get_backbone
from headstart.data.dataset import scan
from headstart.hparams import HParams
from headstart.inference.features import FeatureExtractor, feature_extractor
from headstart.presets import ENSEMBLES
from headstart.training.head import fit_head


def speed(extractor: FeatureExtractor, paths: list[Path]) -> tuple[float, float]:
    """(images/s extracting without the cache, ms for one decoded crop through the backbone graph)."""
    size = extractor.preprocessing.image_size
    crop = np.random.default_rng(0).integers(0, 255, (1, size, size, 3), np.uint8)
    extractor.embed(crop)  # warm up: builds the session
    started = time.perf_counter()
    extractor.extract(paths, use_cache=False)
    rate = len(paths) / (time.perf_counter() - started)
    times = []
    for _ in range(30):
        started = time.perf_counter()
        extractor.embed(crop)
        times.append(time.perf_counter() - started)
    return rate, 1000 * float(np.median(times))


def headstart_head(solver: str):
    def predict(x: dict, y: dict, split: str, seed: int) -> np.ndarray:
        classes = int(y["train"].max()) + 1
        hp = HParams(seed=seed, solver=solver)
        head, _ = fit_head(x["train"], y["train"], x.get("val"), y.get("val"), classes, hp)
        return head(x[split]).argmax(1)

    return predict


def logreg_head(x: dict, y: dict, split: str, seed: int) -> np.ndarray:
    probe = make_pipeline(
        StandardScaler(), LogisticRegressionCV(Cs=[0.003, 0.01, 0.03, 0.1, 0.3], cv=3, max_iter=500, random_state=seed)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence warnings at the weakest regularisation
        return probe.fit(x["train"], y["train"]).predict(x[split])


HEADS = {"lbfgs": headstart_head("lbfgs"), "adamw": headstart_head("adamw"), "logreg": logreg_head}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", type=Path, help="folder of datasets (../shared/datasets)")
    parser.add_argument("--datasets", default="hymenoptera,alpaca,imagewoof-320-sub")
    parser.add_argument("--backbones", default=",".join([*BACKBONES, *ENSEMBLES]))
    parser.add_argument("--heads", default=",".join(HEADS))
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    names, heads = args.backbones.split(","), args.heads.split(",")
    print(f"{'dataset':<18}{'backbone':<40}{'head':<9}{'accuracy':>17}{'macro F1':>17}{'img/s':>7}{'ms/img':>8}")
    for dataset_name in args.datasets.split(","):
        data = args.root / dataset_name
        paths = [s.path for s in scan(data).samples]
        row_of = {p: i for i, p in enumerate(paths)}
        for name in names:
            for tta in ("none", "flip"):
                extractor = feature_extractor(get_backbone(name), tta=tta)
                rate, ms = speed(extractor, paths[:64])
                extraction = extractor.extract(paths)
                rows = {i: r for r, i in enumerate(extraction.ok)}
                scores: dict[str, list[tuple[float, float]]] = {head: [] for head in heads}
                for seed in range(args.seeds):
                    dataset = scan(data, seed=seed)
                    split = "test" if dataset.split("test") else "val"
                    x, y = {}, {}
                    for part in ("train", "val", "test"):
                        samples = [s for s in dataset.split(part) if row_of[s.path] in rows]
                        if samples:
                            x[part] = extraction.features[[rows[row_of[s.path]] for s in samples]]
                            y[part] = np.array([s.label for s in samples])
                    for head in heads:
                        predicted = HEADS[head](x, y, split, seed)
                        scores[head].append(
                            (
                                float((predicted == y[split]).mean()),
                                float(f1_score(y[split], predicted, average="macro")),
                            )
                        )
                for head, values in scores.items():
                    acc, f1 = np.array(values).T
                    label = name if tta == "none" else f"{name} +flip"
                    print(
                        f"{dataset_name:<18}{label:<40}{head:<9}{acc.mean():>9.4f} ± {acc.std():.4f}"
                        f"{f1.mean():>9.4f} ± {f1.std():.4f}{rate:>7.0f}{ms:>8.1f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
