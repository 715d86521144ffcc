"""Named datasets that headstart can download once into its cache (sha256-checked)."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import HeadstartError
from ..events import EventBus, as_bus
from ..fsutil import cache_root, sha256_file


@dataclass(frozen=True)
class Archive:
    """One zip of a named dataset: where it comes from, what it hashes to, where its classes go."""

    url: str
    sha256: str
    split: str  # where its class folders go: DEST/<split>/<class>/...
    root: str  # the folder inside the zip that holds the class folders


@dataclass(frozen=True)
class RemoteDataset:
    """A dataset `headstart train NAME` downloads once (sha256-checked) and unpacks."""

    name: str
    description: str
    archives: tuple[Archive, ...]


REMOTE_DATASETS = {
    ds.name: ds
    for ds in (
        RemoteDataset(
            name="rock_paper_scissors",
            description="Laurence Moroney's rendered hands, 300 px PNG: 2520 train, 372 test (new hands)",
            archives=(
                Archive(
                    "https://storage.googleapis.com/download.tensorflow.org/data/rps.zip",
                    "c2403444395842ad04c53612bad54b574443eae17a0723117a2ff87b9d72194f",
                    "train",
                    "rps",
                ),
                Archive(
                    "https://storage.googleapis.com/download.tensorflow.org/data/rps-test-set.zip",
                    "c27ab9fa43ce40b2e453de711365b477f4424586edf0388116674fd320f07503",
                    "test",
                    "rps-test-set",
                ),
            ),
        ),
    )
}


def datasets_dir() -> Path:
    """Where downloaded datasets are kept: the cache's datasets/ folder."""
    return cache_root() / "datasets"


def resolve_data(data: str | Path, events: EventBus | None = None) -> Path:
    """A folder path as given, or the cached copy of a named dataset (downloaded on first use)."""
    path = Path(data).expanduser()
    if path.exists() or str(data) not in REMOTE_DATASETS:
        if not path.is_dir():
            names = ", ".join(REMOTE_DATASETS)
            raise HeadstartError(f"{path}: no such folder (nor a named dataset: {names})")
        return path
    return fetch(REMOTE_DATASETS[str(data)], events=events)


def fetch(dataset: RemoteDataset, dest: Path | None = None, events: EventBus | None = None) -> Path:
    """Download, verify and unpack every archive of `dataset` once; return its folder."""
    dest = Path(dest) if dest else datasets_dir() / dataset.name
    done = dest / ".complete"
    if done.exists():
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    for archive in dataset.archives:
        zip_path = dest / f"{archive.split}.zip"
        if not (zip_path.exists() and sha256_file(zip_path) == archive.sha256):
            _download(archive, zip_path, dataset.name, as_bus(events))
        _unpack(zip_path, archive, dest)
        zip_path.unlink()
    done.touch()
    return dest


def _download(archive: Archive, target: Path, name: str, events: EventBus) -> None:
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
    digest = hashlib.sha256()
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(archive.url, timeout=60) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with events.stage("download", total, "bytes", f"Downloading {name} ({archive.split})") as progress:
                while block := response.read(1 << 20):
                    out.write(block)
                    digest.update(block)
                    progress.advance(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        Path(tmp).unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise HeadstartError(
            f"cannot download {name} from {archive.url} ({reason}); offline? "
            f"train on a folder instead: headstart train path/to/images (one sub-folder per class)"
        ) from None
    if digest.hexdigest() != archive.sha256:
        Path(tmp).unlink(missing_ok=True)
        raise HeadstartError(
            f"{archive.url}: downloaded file has sha256 {digest.hexdigest()[:16]}…, expected {archive.sha256[:16]}…"
        )
    os.replace(tmp, target)


def _unpack(zip_path: Path, archive: Archive, dest: Path) -> None:
    staging = Path(tempfile.mkdtemp(dir=dest, prefix=".unpack-"))
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for member in zf.infolist():
                name = Path(member.filename)
                if name.is_absolute() or ".." in name.parts:
                    raise HeadstartError(f"{zip_path}: unsafe path in archive: {member.filename}")
            zf.extractall(staging)
        source = staging / archive.root
        if not source.is_dir():
            raise HeadstartError(f"{zip_path}: archive has no {archive.root}/ folder")
        target = dest / archive.split
        shutil.rmtree(target, ignore_errors=True)
        os.replace(source, target)
    except zipfile.BadZipFile as e:
        raise HeadstartError(f"{zip_path}: not a valid zip archive ({e})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
