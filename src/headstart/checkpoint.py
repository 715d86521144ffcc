"""Checkpoints after every epoch of either stage, so an interrupted run can resume.

A checkpoint is a folder beside the bundle (`<out>.checkpoint/`) holding `state.safetensors`
(weights, optimiser moments, random-number-generator states) and `state.json` (epoch, histories,
settings). It is replaced atomically: killed at any instant, the last finished epoch survives.
No pickle: tensors go through safetensors, everything else through JSON.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from .errors import HeadstartError
from .fsutil import recover, staged_directory


class Interrupted(HeadstartError):
    """Ctrl-C during training: the last finished epoch is saved."""


def checkpoint_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".checkpoint")


def run_fingerprint(hparams: dict, samples: list[tuple[str, str, int]]) -> str:
    """Settings and data (paths, splits, labels) a checkpoint is only valid for."""
    blob = json.dumps({"hparams": hparams, "samples": samples}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def flatten(prefix: str, tree) -> dict[str, torch.Tensor]:
    """Tensors of a nested dict/list as flat safetensors keys."""
    out = {}
    if isinstance(tree, torch.Tensor):
        out[prefix] = tree.detach().cpu().contiguous().clone()  # never an alias of a live (or another saved) tensor
    elif isinstance(tree, dict):
        for k, v in tree.items():
            out |= flatten(f"{prefix}.{k}", v)
    elif isinstance(tree, (list, tuple)):
        for i, v in enumerate(tree):
            out |= flatten(f"{prefix}.{i}", v)
    return out


def strip_tensors(tree):
    """The JSON part of a nested structure: tensors replaced by a marker."""
    if isinstance(tree, torch.Tensor):
        return {"__tensor__": True}
    if isinstance(tree, dict):
        return {str(k): strip_tensors(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [strip_tensors(v) for v in tree]
    return tree


def rebuild(prefix: str, skeleton, tensors: dict[str, torch.Tensor]):
    if isinstance(skeleton, dict) and skeleton.get("__tensor__") is True and len(skeleton) == 1:
        return tensors[prefix]
    if isinstance(skeleton, dict):
        return {k: rebuild(f"{prefix}.{k}", v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [rebuild(f"{prefix}.{i}", v, tensors) for i, v in enumerate(skeleton)]
    return skeleton


def save_checkpoint(directory: Path, state: dict) -> None:
    """Write `state` (nested dicts/lists of tensors and JSON values) atomically."""
    with staged_directory(directory) as staging:
        save_file(flatten("s", state), str(staging / "state.safetensors"))
        (staging / "state.json").write_text(json.dumps(strip_tensors(state)), "utf-8")


def load_checkpoint(directory: Path, fingerprint: str) -> dict | None:
    """The saved state, None if there is none; refuses one made for other settings or data."""
    recover(directory)
    if not (directory / "state.json").exists():
        return None
    skeleton = json.loads((directory / "state.json").read_text("utf-8"))
    if skeleton.get("fingerprint") != fingerprint:
        raise HeadstartError(f"{directory}: this checkpoint was made with other settings or data; "
                             "run with the same command to resume, or delete it to start over")
    return rebuild("s", skeleton, load_file(str(directory / "state.safetensors")))
