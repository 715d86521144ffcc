"""The model bundle: a directory with `model.safetensors` (tensors) and `model.json` (everything
else). Written atomically, verified on load, never unpickled."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .errors import HeadstartError
from .fsutil import recover, staged_directory

FORMAT = "headstart-bundle"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"


def _fsync_write(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def is_bundle(path: Path) -> bool:
    return (path / META_FILE).is_file()


def save_bundle(directory: str | Path, tensors: dict[str, torch.Tensor], meta: dict) -> Path:
    """Write the bundle into a temporary sibling, then swap it into place: a crash at any moment
    leaves either the old bundle or the new one, never half of one."""
    target = Path(directory).expanduser().absolute()
    if target.exists() and not (target.is_dir() and (is_bundle(target) or not any(target.iterdir()))):
        raise HeadstartError(f"{target}: exists and is not a headstart model bundle; choose another --out")
    blob = save_safetensors({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata={"format": FORMAT})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **meta,
        "files": {WEIGHTS_FILE: {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}},
    }
    with staged_directory(target) as staging:
        _fsync_write(staging / WEIGHTS_FILE, blob)
        _fsync_write(staging / META_FILE, (json.dumps(meta, indent=2, ensure_ascii=False) + "\n").encode())
    return target


def load_bundle(directory: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """Read and verify a bundle; any inconsistency is a one-line HeadstartError."""
    path = Path(directory).expanduser()
    recover(path)
    if not path.exists():
        raise HeadstartError(f"{path}: no such model bundle")
    if not is_bundle(path):
        raise HeadstartError(f"{path}: not a headstart model bundle (no {META_FILE})")
    try:
        meta = json.loads((path / META_FILE).read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HeadstartError(f"{path / META_FILE}: corrupt metadata ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise HeadstartError(f"{path / META_FILE}: not a headstart model bundle")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise HeadstartError(f"{path}: bundle format {meta['format_version']} is newer than this headstart; upgrade headstart")
    try:
        blob = (path / WEIGHTS_FILE).read_bytes()
    except OSError as e:
        raise HeadstartError(f"{path / WEIGHTS_FILE}: cannot read ({e.strerror or e})") from None
    expected = meta.get("files", {}).get(WEIGHTS_FILE, {}).get("sha256")
    if hashlib.sha256(blob).hexdigest() != expected:
        raise HeadstartError(f"{path / WEIGHTS_FILE}: sha256 does not match {META_FILE} (corrupt or tampered bundle)")
    try:
        tensors = load_safetensors(blob)
    except (SafetensorError, ValueError) as e:
        raise HeadstartError(f"{path / WEIGHTS_FILE}: unreadable ({e})") from None
    return tensors, meta
