"""Atomic file and folder writes: a crash at any instant leaves the old version or the new one."""

from __future__ import annotations

import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def default_mode(directory: bool = False) -> int:
    """What open()/mkdir() would give under the current umask (mkstemp/mkdtemp give 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _retired(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield an empty folder beside `target` to fill; when the block succeeds it replaces `target`
    in two renames (the old version is parked as `.<name>.old` in between, see `recover`)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    os.chmod(staging, default_mode(directory=True))
    try:
        yield staging
        retired = _retired(target)
        if target.exists():
            shutil.rmtree(retired, ignore_errors=True)
            os.replace(target, retired)
        os.replace(staging, target)
        shutil.rmtree(retired, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def recover(target: Path) -> None:
    """After a crash between the two renames of `staged_directory`, put the old version back."""
    retired = _retired(target)
    if not target.exists() and retired.exists():
        os.replace(retired, target)
