"""Batch prediction on Ray: many images labelled by a pool of onnxruntime actors, results streamed
back in input order chunk by chunk (`headstart predict --engine ray`, usually into a
`PredictionFile`), so memory stays flat in the number of images.

The values are `headstart predict`'s: the same crops, the same network (its ONNX export), the same
head and temperature applied here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from ..data.images import collect_images
from ..events import EventBus
from ..inference.predictor import Predictions, Predictor
from ..options import RayOptions
from .cluster import ray_cluster
from .pipeline import run_on_ray


def predict_on_ray(
    predictor: Predictor, inputs: Iterable[str | Path], options: RayOptions, events: EventBus
) -> Iterator[Predictions]:
    """Label image files, folders and globs on Ray; yields `Predictions` chunks in input order
    (the first one also lists the inputs that named nothing)."""
    paths, failures = collect_images(inputs)
    network = predictor.portable()
    classes = predictor.classes
    if not paths:  # nothing to start a cluster for
        yield Predictions(classes, [], failures)
        return
    with events.stage("predict", len(paths), "images", "Predicting on Ray") as progress, ray_cluster(options):
        model = network.onnx.read_bytes()
        outputs = run_on_ray(paths, model, predictor.preprocessing, options, network.mirror, preserve_order=True)
        for batch in outputs:
            ok = [k for k, error in enumerate(batch.error) if not error]
            mirrored = batch.mirrored[ok] if network.mirror else None
            probabilities = network.finish(batch.outputs[ok], mirrored) if ok else np.zeros((0, len(classes)))
            unreadable = {paths[i]: e for i, e in zip(batch.index, batch.error) if e}
            yield Predictions.from_probabilities(
                classes, paths, [int(batch.index[k]) for k in ok], probabilities, failures | unreadable
            )
            failures = {}
            progress.advance(len(batch.index))
