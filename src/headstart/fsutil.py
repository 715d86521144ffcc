"""Files: atomic writes (a crash at any instant leaves the old version or the new one), content
hashes, and where headstart keeps its cache."""

from __future__ import annotations

import atexit
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_root() -> Path:
    """HEADSTART_CACHE, else $XDG_CACHE_HOME/headstart, else ~/.cache/headstart."""
    if env := os.environ.get("HEADSTART_CACHE"):
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "headstart"


def probe_writable(folder: Path) -> None:
    """Create and drop a file in `folder`, raising the OSError if that fails: unlike a permission
    check, this sees read-only file systems, full disks and root alike."""
    with tempfile.TemporaryFile(dir=folder):
        pass


def usable_cache_dir(path: Path) -> bool:
    """Whether `path` (created if missing) can hold cache files; if not, one warning says so."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe_writable(path)
    except OSError as e:
        warn_once(f"cache {path} is unusable ({e.strerror or e}); running without it", key=f"unusable {cache_root()}")
        return False
    return True


def cache_file(folder: str, name: str, root: Path | None = None) -> Path:
    """Where to keep a cached file: `<cache root>/<folder>/<name>`, or a private temporary folder
    when the cache location can't be written."""
    directory = (root or cache_root()) / folder
    return (directory if usable_cache_dir(directory) else scratch_dir()) / name


def scratch_dir() -> Path:
    """A private temporary folder for this process, removed at exit (the cache's stand-in)."""
    global _scratch
    if _scratch is None:
        _scratch = Path(tempfile.mkdtemp(prefix="headstart-"))
        atexit.register(shutil.rmtree, _scratch, True)
    return _scratch


_scratch: Path | None = None
_warned: set[str] = set()
log = logging.getLogger("headstart")


def warn_once(message: str, key: str | None = None) -> None:
    """Log a warning the first time `key` (default: the message) is seen in this process."""
    key = key or message
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def dict_fingerprint(value: dict, length: int = 16) -> str:
    """A short stable hash of a JSON-able dict (key order does not matter)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:length]


def default_mode(directory: bool = False) -> int:
    """What open()/mkdir() would give under the current umask (mkstemp/mkdtemp give 0600/0700)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def write_durably(path: Path, data: bytes) -> None:
    """Write and fsync: after a power cut the file holds all of `data`, not an empty prefix."""
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def fsync_directory(path: Path) -> None:
    """Make renames inside `path` survive a power cut (a no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes, durable: bool = False) -> None:
    """Write `data` to a temporary sibling, then rename it over `path` (fsynced first if `durable`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _retired(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def _staging_prefix(target: Path) -> str:
    """`.<name>.<pid>-`: the pid tells a dead process's leftovers from a live save (see below)."""
    return f".{target.name}.{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_staging(target: Path) -> None:
    """Staging folders left by processes that died mid-save (SIGKILL, power cut); live ones are kept."""
    prefix = f".{target.name}."
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return
    for p in siblings:
        rest = p.name.removeprefix(prefix)
        if p.name.startswith(prefix) and p.name.endswith(".tmp") and "-" in rest:
            pid = rest.split("-", 1)[0]
            if pid.isdigit() and not _alive(int(pid)):
                shutil.rmtree(p, ignore_errors=True)


def _carry_over(old: Path, new: Path, keep: Callable[[str], bool]) -> None:
    """Move the entries of `old` that `keep` names and `new` lacks into `new` (same file system: renames)."""
    for entry in sorted(old.iterdir()):
        if keep(entry.name) and not (new / entry.name).exists():
            os.replace(entry, new / entry.name)


def _never(_name: str) -> bool:
    return False


@contextmanager
def staged_directory(target: Path, keep: Callable[[str], bool] = _never) -> Iterator[Path]:
    """Yield an empty folder beside `target` to fill; when the block succeeds it replaces `target`
    in two renames (the old version is parked as `.<name>.old` in between, see `recover`).

    Entries of the old folder that `keep` names (files the user added) move into the new one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    recover(target, keep)
    staging = Path(tempfile.mkdtemp(prefix=_staging_prefix(target), suffix=".tmp", dir=target.parent))
    os.chmod(staging, default_mode(directory=True))
    try:
        yield staging
        fsync_directory(staging)
        retired = _retired(target)
        if target.exists():
            os.replace(target, retired)
        os.replace(staging, target)
        fsync_directory(target.parent)
        recover(target, keep)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def recover(target: Path, keep: Callable[[str], bool] = _never) -> None:
    """Finish what a crash interrupted in `staged_directory`: with no new version, put the old one
    back; with both, move the kept entries of the old one into the new one and drop the rest."""
    retired = _retired(target)
    if not retired.exists():
        return
    if not target.exists():
        os.replace(retired, target)
        return
    _carry_over(retired, target, keep)
    shutil.rmtree(retired, ignore_errors=True)
