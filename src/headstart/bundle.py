"""The model bundle: a directory with `model.safetensors` (tensors) and `model.json` (everything
else). Written atomically, verified on load, never unpickled.

`save_model` / `load_model` turn a `Model` and its `TrainingRecord` into a bundle and back;
`save_bundle` / `load_bundle` are the file layer under them.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from .backbones import get_backbone
from .errors import HeadstartError
from .fsutil import recover, staged_directory
from .inference.graph import build_head, head_layout
from .inference.model import Model
from .preprocessing import Preprocessing
from .provenance import environment
from .training.record import TrainingRecord

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
        raise HeadstartError(
            f"{path}: bundle format {meta['format_version']} is newer than this headstart; upgrade headstart"
        )
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


def save_model(directory: str | Path, model: Model, record: TrainingRecord) -> Path:
    """Write `model` and its training record as a bundle (atomically)."""
    meta = {
        "labels": model.classes,
        "backbone": {
            "name": model.spec.name,
            "weights_sha256": model.spec.weights.sha256,
            "feature_dim": model.spec.feature_dim,
        },
        "preprocessing": model.preprocessing.to_dict(),
        "head": head_layout(model.head),
        **record.to_dict(),
    }
    meta["calibration"] = meta.get("calibration", {}) | {"temperature": model.temperature}
    meta["environment"] = record.environment or environment()  # where it was trained, kept through re-saves
    tensors = {f"head.{k}": v for k, v in model.head.state_dict().items()}
    if model.tuned_backbone is not None:  # fine-tuned: the whole backbone travels with the bundle
        tensors |= {f"backbone.{k}": v for k, v in model.tuned_backbone.state_dict().items()}
    return save_bundle(directory, tensors, meta)


def load_model(
    directory: str | Path, weights: str | Path | None = None, engine: str = "auto"
) -> tuple[Model, TrainingRecord]:
    """Read a bundle; anything inconsistent (labels vs. tensors, other backbone weights) is refused."""
    tensors, meta = load_bundle(directory)
    where = Path(directory)
    with _fields_of(where):
        spec = get_backbone(meta["backbone"]["name"])
        classes = [str(c) for c in meta["labels"]]
        preprocessing = Preprocessing.from_dict(meta["preprocessing"])
        hidden = tuple(int(h) for h in meta["head"]["hidden"])
        dropout = float(meta["head"]["dropout"])
        recorded_sha = meta["backbone"]["weights_sha256"]
    if recorded_sha != spec.weights.sha256:
        raise HeadstartError(
            f"{where}: trained on other {spec.name} weights (sha256 {recorded_sha[:12]}…) than headstart uses"
        )
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise HeadstartError(f"{where}: labels in model.json are missing or repeated")
    head = build_head(spec.feature_dim, len(classes), hidden, dropout)
    _load_part(
        head,
        tensors,
        "head.",
        f"{where}: model.safetensors does not match model.json "
        f"({len(classes)} labels, head {list(hidden) or 'linear'}); the bundle was altered or mixed up",
    )
    backbone = None
    if any(k.startswith("backbone.") for k in tensors):
        backbone = spec.build()
        _load_part(
            backbone,
            tensors,
            "backbone.",
            f"{where}: fine-tuned backbone weights do not fit {spec.name}; the bundle was altered or mixed up",
        )
    with _fields_of(where):  # read after the tensor checks, which say more precisely what is wrong
        record = TrainingRecord.from_dict(meta, classes)
    temperature = record.calibration.temperature
    if not 0 < temperature < 1e3:
        raise HeadstartError(f"{where}: invalid softmax temperature {temperature} in model.json")
    return Model(spec, head, classes, preprocessing, temperature, backbone, weights, engine), record


@contextmanager
def _fields_of(where: Path) -> Iterator[None]:
    """Missing or mistyped model.json fields become one line naming the bundle."""
    try:
        yield
    except (KeyError, TypeError, ValueError) as e:
        raise HeadstartError(f"{where}: incomplete model.json ({type(e).__name__}: {e})") from None


def _load_part(module: torch.nn.Module, tensors: dict[str, torch.Tensor], prefix: str, mismatch: str) -> None:
    """Load the tensors under `prefix` into `module`, refusing any difference in names or shapes."""
    state = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    if expected != {k: tuple(v.shape) for k, v in state.items()}:
        raise HeadstartError(mismatch)
    module.load_state_dict(state)
