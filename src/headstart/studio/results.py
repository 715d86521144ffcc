"""What the studio page says of a finished training run."""

from __future__ import annotations

import numpy as np


def run_result(name: str, record) -> dict:
    """What the page says of a finished run (live, and again after a reload): the held-out accuracy
    with its count and 95% interval, the curves, what was skipped and any leakage in plain words."""
    from ..evaluation.metrics import wilson

    metrics = record.metrics
    correct, total = int(np.trace(np.asarray(metrics.confusion))), int(metrics.count)
    low, high = wilson(correct, total)
    return {
        "model": name,
        "backbone": record.hparams.backbone,
        "accuracy": metrics.accuracy,
        "correct": correct,
        "total": total,
        "interval": [low, high],
        "split": record.evaluated_on,
        "history": {"val_loss": record.history.val_loss, "val_accuracy": record.history.val_accuracy},
        "skipped": record.skipped,
        "leakage": leakage_in_words(record.leakage),
    }


def leakage_in_words(leakage) -> str | None:
    """The leakage check's finding for someone who records with a webcam, not the CLI's flags."""
    if leakage is None or not leakage.likely:
        return None
    copies = [f"{n} of the {total} {split} images" for split, (n, total) in leakage.held_out_with_copy.items() if n]
    said = f"{' and '.join(copies)} look almost the same as a training image" if copies else "validation looks too easy"
    return (
        f"{said[0].upper()}{said[1:]}, so the accuracy above is probably too high: the model is tested on near-copies "
        "of what it learnt. Record each class again somewhere else (another angle, light or background), in "
        "several short holds, then train again."
    )
