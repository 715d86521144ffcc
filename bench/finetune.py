"""Stage 1 vs stage 2 on a dataset, and what makes fine-tuning fast on this CPU.

    python bench/finetune.py ../shared/datasets/alpaca

Part 1: validation accuracy and wall time of the frozen head, the frozen head with augmented
views, and fine-tuning (stratified 80/20 split, seed 42). Part 2: seconds per fine-tuning epoch
for plain fp32, channels_last, bf16 autocast, torch.compile and cached lower blocks, each with
the validation accuracy after the last epoch (and of the model kept by early stopping).
"""

from __future__ import annotations

import argparse
import copy
import os
import time
from pathlib import Path

import numpy as np

import headstart
from headstart.hparams import HParams
from headstart.training.finetune import FineTuneStage, SpeedOptions, fine_tune


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", type=Path)
    parser.add_argument("--blocks", default="3", help="backbone blocks to fine-tune (default 3)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per speed variant (default 3)")
    parser.add_argument("--views", type=int, default=4)
    args = parser.parse_args()
    os.environ.setdefault("HEADSTART_QUIET", "1")
    split = dict(val_fraction=0.2, test_fraction=0.0, seed=42, quiet=True)
    blocks = args.blocks if args.blocks == "all" else int(args.blocks)

    print(f"{args.data}: stratified 80/20 split, seed 42; {os.cpu_count()} CPUs")
    print(f"{'model':<58} {'val acc':>8} {'wall s':>8}")
    runs = {
        "frozen head": {},
        f"frozen head + {args.views} augmented views (light)": dict(augment="light", views=args.views),
        f"fine-tuned, top {blocks} blocks, no augmentation": dict(fine_tune=blocks),
        f"fine-tuned, top {blocks} blocks, light augmentation": dict(fine_tune=blocks, augment="light"),
    }
    results = {}
    for name, options in runs.items():
        headstart.train(
            args.data, **split, **options
        )  # warm the feature caches: time the training, not the first extraction
        start = time.perf_counter()
        clf = headstart.train(args.data, **split, **options)
        seconds = time.perf_counter() - start
        stage2 = clf.record.to_dict()["stages"].get("fine_tune")
        note = ""
        if stage2:
            h = stage2["history"]
            kept = ", stage 1 kept" if stage2["kept_stage1"] else ""
            note = f"  (stage-2 epochs {len(h['val_loss'])}, best {h['best_epoch']}{kept})"
        results[name] = clf
        print(f"{name:<58} {clf.metrics.accuracy:8.3f} {seconds:8.1f}{note}")
    base = results["frozen head"]
    held_out = base.held_out()
    wrong = [p for p, y in zip(held_out.paths, held_out.labels) if base.predict([p])[0].label != base.classes[y]]
    print("frozen head's validation mistakes:", ", ".join(f"{p.parent.name}/{p.name}" for p in wrong) or "none")

    # Part 2: speed of one stage-2 epoch, without augmentation so every variant sees the same data.
    clf = headstart.train(args.data, **split)
    dataset = clf.record.data.to_dict()
    root = Path(dataset["root"])
    val = [(root / rel, clf.classes.index(label)) for rel, label in dataset["held_out"]["val"]]
    held = {p for p, _ in val}
    from headstart.data.dataset import scan

    train = [
        (s.path, s.label) for s in scan(root, 0, 0).samples if s.path.absolute() not in held and s.path not in held
    ]
    hp = HParams(fine_tune=blocks, fine_tune_epochs=args.epochs, fine_tune_patience=args.epochs, seed=42)
    plain = dict(channels_last=False, cache_lower=False, onnx_lower=False)
    variants = {
        "plain fp32 (eager, every block every epoch)": SpeedOptions(**plain),
        "channels_last": SpeedOptions(**plain | {"channels_last": True}),
        "bf16 autocast": SpeedOptions(**plain | {"bf16": True}),
        "torch.compile": SpeedOptions(**plain | {"compile": True}),
        "frozen lower blocks in onnxruntime": SpeedOptions(**plain | {"onnx_lower": True}),
        "onnxruntime lower + channels_last + bf16": SpeedOptions(
            channels_last=True, bf16=True, cache_lower=False, onnx_lower=True
        ),
        "cached lower blocks (no augmentation)": SpeedOptions(**plain | {"cache_lower": True}),
        "default: cached (onnxruntime) + channels_last": SpeedOptions(),
    }
    print(
        f"\nstage 2, top {blocks} blocks, {args.epochs} epochs, {len(train)} "
        f"train / {len(val)} val images, no augmentation"
    )
    print(f"{'variant':<46} {'setup s':>8} {'s/epoch':>8} {'val acc':>8}")
    for name, speed in variants.items():
        backbone, head = copy.deepcopy(clf.extractor.backbone), copy.deepcopy(clf.head)
        stage = FineTuneStage(
            backbone,
            head,
            clf.preprocessing,
            ([p for p, _ in train], np.array([y for _, y in train])),
            ([p for p, _ in val], np.array([y for _, y in val])),
            hp,
            speed=speed,
        )
        backbone, head, history = fine_tune(stage)
        best = history.val_accuracy[history.best_epoch - 1] if history.best_epoch else history.start_val_accuracy
        per_epoch = float(np.median(history.epoch_seconds))
        print(
            f"{name:<46} {history.setup_seconds:8.2f} {per_epoch:8.2f} "
            f"{history.val_accuracy[-1]:8.3f}   (kept: {best:.3f})"
        )


if __name__ == "__main__":
    main()
