"""The small vocabularies every layer shares, each written once: which runtime runs a backbone
(`Engine`), test-time augmentation (`TTA`), training precision (`Precision`), and where a Ray job
runs (`RayOptions`). The CLI's choices, `HParams`' validation and the bundle schema read them here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

from .errors import HeadstartError

Engine = Literal["auto", "onnxruntime", "torch"]  # the backbone's runtime; auto: onnxruntime when installed
ENGINES: tuple[str, ...] = get_args(Engine)
TTA = Literal["none", "flip"]  # flip: the mean of an image's and its mirror image's features
TTA_MODES: tuple[str, ...] = get_args(TTA)
Precision = Literal["fp32", "bf16"]  # of fine-tuning's arithmetic (bf16: autocast, on CPUs that have it)
PRECISIONS: tuple[str, ...] = get_args(Precision)


def check_engine(engine: str) -> str:
    """`engine` if it is one of `ENGINES`, else a one-line error.

    >>> check_engine("torch")
    'torch'
    """
    if engine not in ENGINES:
        raise HeadstartError(f"unknown engine {engine!r}: use {', '.join(ENGINES)}")
    return engine


def check_tta(tta: str) -> str:
    """`tta` if it is one of `TTA_MODES`, else a one-line error."""
    if tta not in TTA_MODES:
        raise HeadstartError(f"unknown test-time augmentation {tta!r}: use {' or '.join(TTA_MODES)}")
    return tta


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide a Ray job runs (`--engine ray`).

    Attributes:
        address: an existing cluster ("ray://host:10001", "host:6379" or "auto"); None starts a
            local one on this machine (loopback only) for the job's lifetime.
        workers: backbone actors (each one process running onnxruntime).
        cpus_per_worker: CPUs each actor claims, and its onnxruntime threads.
        reserved_cpus: CPUs left for reading and decoding tasks (never 0: actors holding every CPU
            starve the readers and the job stalls).
        no_progress_timeout: seconds without a finished batch before the job is called stuck.
    """

    address: str | None = None
    workers: int = 2
    cpus_per_worker: int = 1
    reserved_cpus: int = 1
    no_progress_timeout: float = 300.0

    def __post_init__(self):
        if self.workers < 1 or self.cpus_per_worker < 1 or self.reserved_cpus < 1:
            raise HeadstartError("Ray: --workers, CPUs per worker and reserved CPUs must each be at least 1")
