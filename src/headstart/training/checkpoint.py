"""Checkpoints after every epoch of either stage, so an interrupted run can resume.

A checkpoint is a folder beside the bundle (`<out>.checkpoint/`) holding `state.safetensors`
(weights, optimiser moments, random-number-generator states) and `state.json` (epoch, histories,
settings). It is replaced atomically: killed at any instant, the last finished epoch survives.
No pickle: tensors go through safetensors, everything else through JSON.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load, save

from ..errors import HeadstartError
from ..events import Cancelled
from ..fsutil import settle, staged_directory, write_durably
from ..schema import CheckpointMeta, read_json, validate

if TYPE_CHECKING:
    from ..data.dataset import Dataset
    from ..evaluation.record import History
    from ..hparams import HParams
    from ..inference.head import Head

LAYOUT = 4  # of the saved state; a checkpoint of another layout is refused, not misread
TENSORS, STATE = "state.safetensors", "state.json"


@dataclass
class EpochSnapshot:
    """The whole state of a training stage after an epoch: what `fit_epochs` hands to its
    `on_epoch` and resumes from, exactly (weights, optimiser, random-number generators)."""

    epoch: int  # epochs finished
    history: dict  # `History.to_dict()` so far
    best_loss: float  # the lowest validation loss so far ...
    stale: int  # ... and the epochs since it
    best: dict  # the weights that gave it
    weights: dict  # the weights now
    stage: dict  # the stage's optimiser (and schedule) state
    generator: Any  # the shuffling generator's state
    torch_rng: Any  # torch's global generator's state (dropout)

    def to_tree(self) -> dict:
        """As nested dicts of tensors and JSON values (what `save_checkpoint` writes)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_tree(cls, tree: dict) -> EpochSnapshot:
        """From what `to_tree` gave (read back by `load_checkpoint`)."""
        return cls(**{f.name: tree[f.name] for f in fields(cls)})


@dataclass
class FinishedHead:
    """Stage 1 done: the head's tensors and its history."""

    head: dict[str, np.ndarray]
    history: dict


@dataclass
class CheckpointState:
    """What a checkpoint holds: the run it belongs to, then stage 1 in progress (`head_epoch`) or
    finished (`head`), and stage 2 in progress (`fine_tune_epoch`)."""

    fingerprint: str
    head_epoch: EpochSnapshot | None = None
    head: FinishedHead | None = None
    fine_tune_epoch: EpochSnapshot | None = None

    def to_tree(self) -> dict:
        """state.json's layout (with the tensors in place): stage1, stage1_done, stage2."""
        done = self.head is not None
        stage1 = {"head": self.head.head, "history": self.head.history} if done else self.head_epoch.to_tree()
        tree = {"fingerprint": self.fingerprint, "stage1": stage1, "stage1_done": done}
        if self.fine_tune_epoch is not None:
            tree["stage2"] = self.fine_tune_epoch.to_tree()
        return tree

    @classmethod
    def from_tree(cls, tree: dict) -> CheckpointState:
        """From `to_tree`'s layout."""
        stage1, stage2 = tree["stage1"], tree.get("stage2")
        return cls(
            fingerprint=tree["fingerprint"],
            head_epoch=None if tree["stage1_done"] else EpochSnapshot.from_tree(stage1),
            head=FinishedHead(stage1["head"], stage1["history"]) if tree["stage1_done"] else None,
            fine_tune_epoch=EpochSnapshot.from_tree(stage2) if stage2 is not None else None,
        )


class Interrupted(Cancelled):
    """Ctrl-C or a cancelling subscriber during training: the last finished epoch is saved."""


def checkpoint_dir(out: str | Path) -> Path:
    """Where the checkpoints of a run saving to `out` go: `<out>.checkpoint/`, beside it."""
    out = Path(out)
    return out.with_name(out.name + ".checkpoint")


def run_fingerprint(hparams: dict, samples: list[tuple[str, str, int]]) -> str:
    """Settings and data (paths, splits, labels) a checkpoint is only valid for."""
    blob = json.dumps({"layout": LAYOUT, "hparams": hparams, "samples": samples}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _is_torch_tensor(value) -> bool:
    """Without importing torch: a stage-1 run on the lbfgs solver never loads it."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def flatten(prefix: str, tree) -> dict[str, np.ndarray]:
    """Arrays and tensors of a nested dict/list as flat safetensors keys, as numpy arrays."""
    out = {}
    if isinstance(tree, np.ndarray):
        out[prefix] = np.ascontiguousarray(tree).copy()  # never an alias of a live (or another saved) array
    elif _is_torch_tensor(tree):
        out[prefix] = tree.detach().cpu().contiguous().numpy().copy()
    elif isinstance(tree, dict):
        for k, v in tree.items():
            out |= flatten(f"{prefix}.{k}", v)
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out |= flatten(f"{prefix}.{i}", v)
    return out


def strip_tensors(tree):
    """The JSON part of a nested structure: arrays replaced by a marker naming their kind."""
    if isinstance(tree, np.ndarray):
        return {"__tensor__": "numpy"}
    if _is_torch_tensor(tree):
        return {"__tensor__": "torch"}
    if isinstance(tree, dict):
        return {str(k): strip_tensors(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [strip_tensors(v) for v in tree]
    return tree


def rebuild(prefix: str, skeleton, arrays: dict[str, np.ndarray]):
    """The nested structure back, each array as the kind it was saved as."""
    if isinstance(skeleton, dict) and skeleton.get("__tensor__") in ("numpy", "torch") and len(skeleton) == 1:
        if skeleton["__tensor__"] == "numpy":
            return arrays[prefix]
        import torch

        return torch.from_numpy(arrays[prefix])
    if isinstance(skeleton, dict):
        return {k: rebuild(f"{prefix}.{k}", v, arrays) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [rebuild(f"{prefix}.{i}", v, arrays) for i, v in enumerate(skeleton)]
    return skeleton


def save_checkpoint(directory: Path, state: dict) -> None:
    """Write `state` (nested dicts/lists of tensors and JSON values) atomically and durably."""
    blob = save(flatten("s", state))
    skeleton = strip_tensors(state)
    skeleton["checksum"] = _checksum(skeleton, blob)
    with staged_directory(directory) as staging:
        write_durably(staging / TENSORS, blob)
        write_durably(staging / STATE, json.dumps(skeleton).encode())


def load_checkpoint(directory: Path, fingerprint: str) -> CheckpointState | None:
    """The saved state, None if there is none; refuses one made for other settings or data, and a
    damaged one (schema, tensors' hash), each with one line saying what to do."""
    directory = settle(directory)
    if not (directory / STATE).exists():
        return None
    damaged = f"{directory}: damaged checkpoint; delete that folder to start over"
    skeleton = read_json(directory / STATE)
    meta = validate(CheckpointMeta, skeleton, directory / STATE)
    if meta.fingerprint != fingerprint:
        raise HeadstartError(
            f"{directory}: this checkpoint was made with other settings or data; "
            "run with the same command to resume, or delete it to start over"
        )
    try:
        blob = (directory / TENSORS).read_bytes()
    except OSError as e:
        raise HeadstartError(f"{damaged} ({TENSORS}: {e.strerror or e})") from None
    if _checksum(skeleton, blob) != meta.checksum:
        raise HeadstartError(f"{damaged} (its files do not match their checksum)")
    try:
        return CheckpointState.from_tree(rebuild("s", skeleton, load(blob)))
    except (SafetensorError, KeyError, ValueError, TypeError) as e:
        raise HeadstartError(f"{damaged} ({type(e).__name__})") from None


def _checksum(skeleton: dict, blob: bytes) -> str:
    """sha256 over the state's JSON (less this field) and its tensors: any edit of either shows."""
    text = json.dumps({k: v for k, v in skeleton.items() if k != "checksum"}, sort_keys=True).encode()
    return hashlib.sha256(hashlib.sha256(text).digest() + blob).hexdigest()


class Checkpoints:
    """Per-epoch checkpoints of a training run saved to `out` (none when `out` is None); only
    `writer` writes (DDP rank 0), every process reads one to resume."""

    def __init__(
        self, out: str | Path | None, hp: HParams, dataset: Dataset, data: str | Path, resume: bool, writer: bool = True
    ):
        self.dir = checkpoint_dir(out) if out is not None else None
        self.writer = writer
        self.data, self.out = data, out
        self.fingerprint = run_fingerprint(hp.to_dict(), [(str(s.path), s.split, s.label) for s in dataset.samples])
        self.saved: CheckpointState | None = None
        self.head: FinishedHead | None = None  # stage 1, once finished
        if self.dir is None:  # nothing saved (RunOptions refuses resume without out)
            return
        if resume:
            self.saved = load_checkpoint(self.dir, self.fingerprint)
            if self.saved is None:
                raise HeadstartError(f"nothing to resume: no checkpoint at {self.dir}")
            self.head = self.saved.head
        elif self.dir.exists():
            raise HeadstartError(
                f"{self.out} has an unfinished run ({self.dir}): add --resume to continue it, or delete that folder"
            )

    def _save(self, state: CheckpointState) -> None:
        if self.dir is not None and self.writer:
            save_checkpoint(self.dir, state.to_tree())

    def stage1_epoch(self, snapshot: EpochSnapshot) -> None:
        """After each epoch of a mini-batch head."""
        self._save(CheckpointState(self.fingerprint, head_epoch=snapshot))

    def stage1_done(self, head: Head, history: History) -> None:
        """Stage 1 finished: its head is kept through stage 2."""
        self.head = FinishedHead(head.state_dict(), history.to_dict())
        self._save(CheckpointState(self.fingerprint, head=self.head))

    def stage2_epoch(self, snapshot: EpochSnapshot) -> None:
        """After each epoch of fine-tuning."""
        self._save(CheckpointState(self.fingerprint, head=self.head, fine_tune_epoch=snapshot))

    @contextmanager
    def interruptible(self):
        """Ctrl-C or cancellation: stop with the last finished epoch saved and say how to resume."""
        try:
            yield
        except (KeyboardInterrupt, Cancelled):
            if self.dir is None or not self.dir.exists():
                raise
            raise Interrupted(
                f"interrupted; training up to the last finished epoch is saved in {self.dir}. "
                f"Resume with: headstart train {self.data} --out {self.out} --resume (and the same options)"
            ) from None

    def discard(self) -> None:
        """The run finished: its checkpoint goes."""
        if self.dir is not None and self.writer:
            shutil.rmtree(self.dir, ignore_errors=True)
