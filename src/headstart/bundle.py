"""The model bundle: a directory with `model.safetensors` (tensors) and `model.json` (everything
else). Written atomically, verified on load, never unpickled.

`save_model` / `load_model` turn a `Model` and its `TrainingRecord` into a bundle and back;
`save_bundle` / `load_bundle` are the file layer under them.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as load_safetensors
from safetensors.numpy import save as save_safetensors

from .backbones import get_backbone
from .errors import HeadstartError
from .evaluation.figures import report_files
from .evaluation.record import TrainingRecord
from .fsutil import is_staging_name, probe_writable, settle, staged_directory, write_durably
from .inference.head import Head
from .inference.model import Model
from .inference.runtime import numpy_state
from .preprocessing import Preprocessing
from .schema import BUNDLE_FORMAT, META_FILE, BundleMeta, is_bundle, read_json, validate

FORMAT = BUNDLE_FORMAT
FORMAT_VERSION = 2  # 2: model.json carries `integrity`
WEIGHTS_FILE = "model.safetensors"
MAX_WEIGHTS_BYTES = 4 << 30


def users_file(name: str) -> bool:
    """Entries of a bundle folder that headstart did not write (every registered report figure's
    PNG is headstart's, as are temporary files a killed write left): kept when the bundle is replaced."""
    return name not in {WEIGHTS_FILE, META_FILE, *report_files()} and not is_staging_name(name)


def check_target(target: Path) -> None:
    """Refuse, before any work, a folder the bundle may not replace: only a headstart bundle or
    an empty (or missing) folder, never a symlink, and somewhere writable."""
    limit = os.pathconf("/", "PC_PATH_MAX")
    if len(os.fsencode(target)) + 32 >= limit:  # room for the staging folder's name
        raise HeadstartError(f"--out is {len(os.fsencode(target))} bytes long; this OS allows paths of {limit}")
    if target.is_symlink():
        raise HeadstartError(f"{target}: is a symbolic link; give the real folder as --out")
    if target.exists():
        if not target.is_dir():
            raise HeadstartError(f"{target}: exists and is not a folder; choose another --out")
        if not is_bundle(target) and any(target.iterdir()):
            raise HeadstartError(
                f"{target}: exists and is not a headstart model bundle (no headstart model.json); "
                "headstart never replaces your files: choose another --out"
            )
        _check_writable(target)
        return
    parent = next((p for p in target.parents if p.exists()), None)
    if parent is None or not parent.is_dir():
        raise HeadstartError(f"{target}: {parent} is not a folder; choose another --out")
    _check_writable(parent)
    if len(os.fsencode(target.name)) + 16 > os.pathconf(parent, "PC_NAME_MAX"):
        raise HeadstartError(f"{target}: the folder name is too long for this file system")


def _check_writable(folder: Path) -> None:
    try:
        probe_writable(folder)
    except OSError as e:
        raise HeadstartError(f"{folder}: can't write there ({e.strerror or e}); choose another --out") from None


def save_bundle(directory: str | Path, tensors: dict[str, np.ndarray], meta: dict) -> Path:
    """Write the bundle into a temporary sibling, then swap it into place: a crash at any moment
    leaves either the old bundle or the new one, never half of one. Files the user put in the old
    bundle's folder move into the new one."""
    target = Path(directory).expanduser().absolute()
    check_target(target)
    blob = save_safetensors(
        {k: np.require(v, requirements="C") for k, v in tensors.items()}, metadata={"format": FORMAT}
    )
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        **meta,
        "files": {WEIGHTS_FILE: {"sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}},
    }
    meta["integrity"] = integrity(meta)
    # Non-UTF-8 file names (surrogate escapes) are written as \udcXX JSON escapes: valid JSON, read back exactly.
    text = json.dumps(meta, indent=2, ensure_ascii=False) + "\n"
    with staged_directory(target, keep=users_file) as staging:
        write_durably(staging / WEIGHTS_FILE, blob)
        write_durably(staging / META_FILE, text.encode("utf-8", "backslashreplace"))
    return target


def integrity(meta: dict) -> str:
    """sha256 over everything that decides predictions: labels (in order), backbone, preprocessing,
    head shape, temperature and the tensors' hash. An edit to any of them is refused on load."""
    decisive = {
        "labels": meta["labels"],
        "backbone": meta["backbone"],
        "preprocessing": meta["preprocessing"],
        "head": meta["head"],
        "temperature": meta["calibration"]["temperature"],
        "files": meta["files"],
    }
    return hashlib.sha256(json.dumps(decisive, sort_keys=True, ensure_ascii=True).encode()).hexdigest()


def load_bundle(directory: str | Path) -> tuple[dict[str, np.ndarray], BundleMeta]:
    """Read and verify a bundle: model.json against its schema and integrity hash, the tensors
    against their recorded hash. Any inconsistency is a one-line HeadstartError."""
    path = settle(Path(directory).expanduser(), keep=users_file)  # a save a crash interrupted is finished first
    if not path.exists():
        raise HeadstartError(f"{path}: no such model bundle")
    if not (path / META_FILE).is_file():
        raise HeadstartError(f"{path}: not a headstart model bundle (no {META_FILE})")
    raw = read_json(path / META_FILE)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise HeadstartError(f"{path / META_FILE}: not a headstart model bundle")
    version = raw.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise HeadstartError(f"{path}: bundle format {version} is newer than this headstart; upgrade headstart")
    if isinstance(version, int) and version < FORMAT_VERSION:
        raise HeadstartError(f"{path}: written by an older headstart (format {version}); train it again")
    meta = validate(BundleMeta, raw, path / META_FILE)
    if integrity(raw) != meta.integrity:
        raise HeadstartError(
            f"{path / META_FILE}: labels, preprocessing, head or temperature were changed after saving "
            "(integrity hash does not match); refusing a tampered bundle"
        )
    expected = meta.files[WEIGHTS_FILE]
    blob = _read_exactly(path / WEIGHTS_FILE, expected.bytes)
    if hashlib.sha256(blob).hexdigest() != expected.sha256:
        raise HeadstartError(f"{path / WEIGHTS_FILE}: sha256 does not match {META_FILE} (corrupt or tampered bundle)")
    try:
        tensors = load_safetensors(blob)
    except (SafetensorError, ValueError) as e:
        raise HeadstartError(f"{path / WEIGHTS_FILE}: unreadable ({e})") from None
    return tensors, meta


def _read_exactly(path: Path, size: int) -> bytes:
    """The file's bytes if it holds exactly `size` of them (checked before reading, so a swapped
    multi-GB file is never read into memory)."""
    try:
        actual = path.stat().st_size
        if actual != size or size > MAX_WEIGHTS_BYTES:
            raise HeadstartError(f"{path}: {actual} bytes, but {META_FILE} records {size} (corrupt or tampered bundle)")
        return path.read_bytes()
    except OSError as e:
        raise HeadstartError(f"{path}: cannot read ({e.strerror or e})") from None


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
        "test_time_augmentation": model.tta,
        "head": model.head.layout,
        **record.to_dict(),
    }
    meta["calibration"] = meta.get("calibration", {}) | {"temperature": model.temperature}
    from .provenance import environment  # package metadata: read when saving, not when loading

    meta["environment"] = record.environment or environment()  # where it was trained, kept through re-saves
    tensors = {f"head.{k}": v for k, v in model.head.state_dict().items()}
    if model.tuned_backbone is not None:  # fine-tuned: the whole backbone travels with the bundle
        tensors |= {f"backbone.{k}": v for k, v in numpy_state(model.tuned_backbone).items()}
    return save_bundle(directory, tensors, meta)


def load_model(
    directory: str | Path, weights: str | Path | None = None, engine: str = "auto"
) -> tuple[Model, TrainingRecord]:
    """Read a bundle; anything inconsistent (labels vs. tensors, other backbone weights) is refused."""
    tensors, meta = load_bundle(directory)
    where = Path(directory)
    spec = get_backbone(meta.backbone.name)
    if meta.backbone.weights_sha256 != spec.weights.sha256 or meta.backbone.feature_dim != spec.feature_dim:
        raise HeadstartError(
            f"{where}: trained on other {spec.name} weights "
            f"(sha256 {meta.backbone.weights_sha256[:12]}…) than headstart uses"
        )
    classes, hidden = list(meta.labels), tuple(meta.head.hidden)
    try:
        head = Head.from_state(_part(tensors, "head."), hidden, meta.head.dropout, spec.feature_dim, len(classes))
    except ValueError:
        raise HeadstartError(
            f"{where}: model.safetensors does not match model.json "
            f"({len(classes)} labels, head {list(hidden) or 'linear'}); the bundle was altered or mixed up"
        ) from None
    backbone = _part(tensors, "backbone.") or None
    if backbone is not None:  # torch loads here only to check the tuned tensors against the architecture
        expected = {k: tuple(v.shape) for k, v in spec.build().state_dict().items()}
        if expected != {k: v.shape for k, v in backbone.items()}:
            raise HeadstartError(
                f"{where}: fine-tuned backbone weights do not fit {spec.name}; the bundle was altered or mixed up"
            )
    try:  # the record is typed by the schema; what is left is its consistency (metrics name the labels)
        record = TrainingRecord.from_dict(meta.model_dump(exclude_none=True), classes)
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise HeadstartError(f"{where / META_FILE}: inconsistent training record ({type(e).__name__}: {e})") from None
    preprocessing = Preprocessing.from_dict(meta.preprocessing.model_dump())
    temperature, tta = meta.calibration.temperature, meta.test_time_augmentation
    return Model(spec, head, classes, preprocessing, temperature, backbone, weights, engine, tta=tta), record


def _part(tensors: dict[str, np.ndarray], prefix: str) -> dict[str, np.ndarray]:
    """The tensors under `prefix`, named without it."""
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
