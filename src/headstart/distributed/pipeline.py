"""Backbone outputs of many images on Ray Data: files read and decoded in tasks with headstart's own
reader and preprocessing (bit-identical crops to one process), the network run by a pool of
onnxruntime actors, results streamed back to the caller batch by batch.

Actors that die are restarted by Ray and their batches retried; a job with no finished batch for
`RayOptions.no_progress_timeout` seconds fails with an error instead of hanging.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import HeadstartError
from ..inference.pipeline import prepare_image
from ..options import RayOptions
from ..preprocessing import Preprocessing

BLOCK = 64  # images per read task: small enough that every worker gets work on a few hundred images
BATCH = 16  # images per actor call


@dataclass
class OutputBatch:
    """What came back for some images: their positions in the job's path list, content hashes,
    why each unreadable one was left out ("" when read), and network outputs (NaN rows where
    unreadable); `mirrored` holds the mirror images' outputs when they were asked for."""

    index: np.ndarray
    sha256: list[str]
    error: list[str]
    outputs: np.ndarray
    mirrored: np.ndarray | None = None


def decode_block(batch: dict, preprocessing: Preprocessing) -> dict:
    """Ray task: read, hash and crop each path with the single-process path's own function."""
    size = preprocessing.image_size
    n = len(batch["path"])
    crops = np.zeros((n, size, size, 3), np.uint8)
    hashes, errors = [""] * n, [""] * n
    for i, path in enumerate(batch["path"]):
        content_hash, _, crop, error, _ = prepare_image(Path(path), preprocessing, cache=None)
        hashes[i], errors[i] = content_hash or "", error or ""
        if crop is not None:
            crops[i] = crop
    return {"index": batch["index"], "sha256": np.array(hashes), "error": np.array(errors), "crop": crops}


class OnnxActor:
    """Ray actor: one onnxruntime session on `threads` cores (this worker's GPU, if any), fed uint8 crops."""

    def __init__(self, model: bytes, threads: int, mirror: bool):
        from ..inference.runtime import ort_session

        self.session = ort_session(model, threads=threads)
        self.mirror = mirror

    def run(self, crops: np.ndarray) -> np.ndarray:
        """The network on a batch of uint8 crops."""
        return self.session.run(None, {"images": np.ascontiguousarray(crops)})[0]

    def __call__(self, batch: dict) -> dict:
        ok = np.array([not e for e in batch["error"]], dtype=bool)
        crops = batch["crop"]
        result = {k: batch[k] for k in ("index", "sha256", "error")}
        views = {"outputs": crops} | ({"mirrored": crops[:, :, ::-1]} if self.mirror else {})
        for name, view in views.items():
            out = self.run(view[ok]) if ok.any() else None
            dim = out.shape[1] if out is not None else self.session.get_outputs()[0].shape[-1]
            full = np.full((len(ok), dim), np.nan, np.float32)
            if out is not None:
                full[ok] = out
            result[name] = full
        return result


def run_on_ray(
    paths: Sequence[Path],
    model: bytes,
    preprocessing: Preprocessing,
    options: RayOptions,
    mirror: bool = False,
    preserve_order: bool = False,
) -> Iterator[OutputBatch]:
    """Run the ONNX `model` (uint8 crops -> one output) on every image of `paths` on Ray (call
    inside `ray_cluster`); yields batches as they finish, in input order if `preserve_order`."""
    import ray
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # headstart's own bars show the progress
    context.execution_options.preserve_order = preserve_order
    items = [{"index": i, "path": str(p)} for i, p in enumerate(paths)]
    dataset = (
        ray.data.from_items(items, override_num_blocks=max(1, -(-len(items) // BLOCK)))
        .map_batches(decode_block, batch_size=BLOCK, fn_kwargs={"preprocessing": preprocessing}, num_cpus=1)
        .map_batches(
            OnnxActor,
            batch_size=BATCH,
            fn_constructor_kwargs={
                "model": model,
                "threads": options.cpus_per_worker,
                "mirror": mirror,
            },
            compute=ray.data.ActorPoolStrategy(size=options.workers),
            num_cpus=options.cpus_per_worker,
            num_gpus=1 if _cluster_has_gpus(ray) else None,
        )
    )
    for batch in _watched(dataset.iter_batches(batch_size=None, batch_format="numpy"), options.no_progress_timeout):
        yield OutputBatch(
            batch["index"].astype(np.int64),
            [str(h) for h in batch["sha256"]],
            [str(e) for e in batch["error"]],
            np.asarray(batch["outputs"], np.float32),
            np.asarray(batch["mirrored"], np.float32) if mirror else None,
        )


def _cluster_has_gpus(ray) -> bool:
    return ray.cluster_resources().get("GPU", 0) > 0


_END = object()


def _watched(batches: Iterator, timeout: float) -> Iterator:
    """`batches`, consumed on a thread; fails when none arrives for `timeout` seconds (a stalled
    cluster otherwise waits forever without a word)."""
    handoff: queue.Queue = queue.Queue(maxsize=4)

    def pump():
        try:
            for item in batches:
                handoff.put(item)
            handoff.put(_END)
        except BaseException as e:  # handed to the consumer, raised there
            handoff.put(e)

    threading.Thread(target=pump, daemon=True, name="ray-batches").start()
    while True:
        try:
            item = handoff.get(timeout=timeout)
        except queue.Empty:
            raise HeadstartError(
                f"Ray: no batch finished in {timeout:g} s; the job is stuck (are the workers alive, "
                "and is a CPU left for reading files?)"
            ) from None
        if item is _END:
            return
        if isinstance(item, BaseException):
            raise HeadstartError(f"Ray job failed: {' '.join(str(item).split())[:300]}") from None
        yield item
