"""`headstart demo`: the whole loop on a real dataset that ships inside scikit-learn, offline."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image
from rich.console import Console
from rich.table import Table

from ..classifier import Classifier
from ..data.dataset import scan
from ..evaluation.console import evaluation_view, print_skipped
from ..fsutil import cache_root

DIGITS_SCALE = 4  # 8x8 scans shown as 32x32 PNGs (nearest neighbour keeps the original pixels)


def digits_folder(root: Path | None = None) -> Path:
    """scikit-learn's 1797 handwritten digits (UCI, 8x8 greyscale) as DIR/<digit>/<n>.png, written once."""
    from sklearn.datasets import load_digits

    root = Path(root) if root else cache_root() / "datasets" / "digits"
    if (root / ".complete").exists():
        return root
    digits = load_digits()
    staging = Path(tempfile.mkdtemp(prefix=".digits-", dir=root.parent if root.parent.exists() else None))
    for i, (pixels, target) in enumerate(zip(digits.images, digits.target)):
        folder = staging / str(target)
        folder.mkdir(exist_ok=True)
        image = Image.fromarray((pixels * (255 / 16)).round().astype(np.uint8), "L")
        image.resize((8 * DIGITS_SCALE,) * 2, Image.Resampling.NEAREST).save(folder / f"{i:04d}.png")
    (staging / ".complete").touch()
    root.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    shutil.move(str(staging), root)
    return root


def run_demo(
    data: str | Path | None = None,
    out_dir: str | Path | None = None,
    console: Console | None = None,
    quiet: bool = False,
) -> Classifier:
    """Train on `data` (default: the digits), show the evaluation, save, reload, compare, predict."""
    console = console or Console()
    started = time.perf_counter()
    if data is None:
        data = digits_folder()
        console.print(
            f"[bold]1. Data[/]: scikit-learn's handwritten digits, 1797 images of 10 classes, as PNGs in {data}"
        )
    else:
        console.print(f"[bold]1. Data[/]: {data}")

    clf = Classifier.train(data, quiet=quiet)
    record = clf.record
    t = record.timings
    console.print(
        f"[bold]2. Trained[/] a {clf.hparams.backbone} head on {sum(record.data.counts['train'].values())} images "
        f"(features {t.feature_extraction_s:.1f} s, {t.images_from_cache} "
        f"cached; head {t.head_training_s:.1f} s)"
    )
    print_skipped(console, clf.record.skipped)
    console.print(evaluation_view(clf.metrics, f"   Evaluation on the {record.evaluated_on} split"))

    temporary = out_dir is None
    target = Path(out_dir) if out_dir else Path(tempfile.mkdtemp(prefix="headstart-demo-")) / "model"
    clf.save(target)
    console.print(f"[bold]3. Saved[/] the bundle to {target}: {', '.join(sorted(p.name for p in target.iterdir()))}")

    reloaded = Classifier.load(target)
    dataset = scan(data, clf.hparams.val_fraction, clf.hparams.test_fraction, clf.hparams.seed)
    held_out = dataset.split(record.evaluated_on)[:: max(1, len(dataset.samples) // 40)][:8]
    before = clf.predict([s.path for s in held_out])
    after = reloaded.predict([s.path for s in held_out])
    same = [a.label for a in before] == [b.label for b in after] and all(
        abs(a.probability - b.probability) < 1e-6 for a, b in zip(before, after)
    )
    console.print(f"[bold]4. Reloaded[/] it: predictions identical to the trained model: {'yes' if same else 'NO'}")

    console.print("[bold]5. Predictions[/] of the reloaded model on held-out images")
    table = Table()
    for col in ("image", "true", "predicted", "probability"):
        table.add_column(col)
    for sample, p in zip(held_out, after):
        truth = dataset.classes[sample.label]
        colour = "green" if truth == p.label else "red"
        table.add_row(
            str(sample.path.relative_to(dataset.root)), truth, f"[{colour}]{p.label}[/]", f"{p.probability:.1%}"
        )
    console.print(table)
    console.print(f"Done in {time.perf_counter() - started:.1f} s.")
    if temporary:
        shutil.rmtree(target.parent, ignore_errors=True)
    if not same:
        raise RuntimeError("reloaded model disagrees with the trained one")
    return clf
