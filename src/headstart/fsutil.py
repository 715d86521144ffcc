"""Files: atomic writes (a crash at any instant leaves the old version or the new one), content
hashes, and where headstart keeps its cache."""

from __future__ import annotations

import atexit
import ctypes
import errno
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import sys
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
    """Write `data` to a temporary sibling, then rename it over `path` (fsynced first if `durable`).
    The sibling is named so that `remove_stale_staging(path)` knows it if this process is killed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=staging_prefix(path), suffix=".tmp")
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


STAGING_NAME = re.compile(r"^\..+\.\d+-[^/]*\.tmp$")  # .<target name>.<pid>-<random>.tmp


def is_staging_name(name: str) -> bool:
    """Whether `name` is one of the temporary siblings headstart writes before a rename."""
    return STAGING_NAME.match(name) is not None


def staging_prefix(target: Path) -> str:
    """`.<name>.<pid>-`: the pid tells a dead process's leftovers from a live save (see below)."""
    return f".{target.name}.{os.getpid()}-"


def staging_folder(target: Path) -> Path:
    """A new empty folder beside `target` (same file system, so renames move its entries), named
    so that `remove_stale_staging` removes it if this process dies before using it up."""
    staging = Path(tempfile.mkdtemp(prefix=staging_prefix(target), suffix=".tmp", dir=target.parent))
    os.chmod(staging, default_mode(directory=True))
    return staging


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def remove_stale_staging(target: Path) -> None:
    """Staging folders and files left beside `target` by processes that died mid-write (SIGKILL,
    power cut); live processes' are kept. Best effort: a folder we may not write is left alone."""
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
                try:
                    if p.is_dir() and not p.is_symlink():
                        shutil.rmtree(p)
                    else:
                        p.unlink()
                except OSError:
                    pass


def settle(target: Path, keep: Callable[[str], bool] | None = None) -> Path:
    """Before reading `target`: finish a swap a crash interrupted (`recover`) and remove dead
    processes' staging beside it. Where the folder can't be written (read-only media), the parked
    old version is read in place. Returns the path to read."""
    remove_stale_staging(target)
    try:
        recover(target, keep or _never)
    except OSError:
        retired = _retired(target)
        if not target.exists() and retired.is_dir():
            return retired
    return target


def settle_all(folder: Path, keep: Callable[[str], bool] | None = None) -> None:
    """`settle` every entry of `folder` that a crash left parked (before listing what it holds)."""
    try:
        parked = [p.name for p in folder.iterdir() if p.name.startswith(".") and p.name.endswith(".old")]
    except OSError:
        return
    for name in parked:
        settle(folder / name[1 : -len(".old")], keep)


RENAME_EXCHANGE = 2  # linux/fs.h
AT_FDCWD = -100


def exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one atomic step (Linux's renameat2 with RENAME_EXCHANGE): at every
    instant each name holds one of the two. False where the OS or the file system lacks the call
    (then the caller falls back to two renames)."""
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(AT_FDCWD, os.fsencode(a), AT_FDCWD, os.fsencode(b), RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


@functools.cache
def _renameat2():
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2  # glibc 2.28+, musl 1.2.2+
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _carry_over(old: Path, new: Path, keep: Callable[[str], bool]) -> None:
    """Move the entries of `old` that `keep` names and `new` lacks into `new` (same file system: renames)."""
    for entry in sorted(old.iterdir()):
        if keep(entry.name) and not (new / entry.name).exists():
            os.replace(entry, new / entry.name)


def _link_kept(old: Path, new: Path, keep: Callable[[str], bool]) -> None:
    """Hard-link the entries of `old` that `keep` names (folders recreated, links copied) into
    `new`, before the swap, so that whichever version a crash leaves holds the user's files.
    Where the file system refuses hard links, `_carry_over` moves them after the swap instead."""

    def link(src: Path, dst: Path) -> None:
        if src.is_symlink():
            os.symlink(os.readlink(src), dst)
        elif src.is_dir():
            dst.mkdir()
            for child in sorted(src.iterdir()):
                link(child, dst / child.name)
        else:
            os.link(src, dst)

    for entry in sorted(old.iterdir()):
        if keep(entry.name) and not (new / entry.name).exists():
            try:
                link(entry, new / entry.name)
            except OSError as e:
                if e.errno not in (errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                shutil.rmtree(new / entry.name, ignore_errors=True)
                (new / entry.name).unlink(missing_ok=True)


def _never(_name: str) -> bool:
    return False


@contextmanager
def staged_directory(target: Path, keep: Callable[[str], bool] = _never) -> Iterator[Path]:
    """Yield an empty folder beside `target` to fill; when the block succeeds it replaces `target`
    in one atomic exchange where the OS has one (Linux), else in two renames (the old version is
    parked as `.<name>.old` in between; `recover`, run by every later save and load, finishes it).

    Entries of the old folder that `keep` names (files the user added) are kept in the new one.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    recover(target, keep)
    staging = staging_folder(target)
    try:
        yield staging
        if target.exists():
            _link_kept(target, staging, keep)
        fsync_directory(staging)
        if target.exists() and exchange(staging, target):
            _carry_over(staging, target, keep)  # what could not be hard-linked; `staging` is the old version now
        else:
            if target.exists():
                os.replace(target, _retired(target))
            os.replace(staging, target)
        fsync_directory(target.parent)
        recover(target, keep)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def recover(target: Path, keep: Callable[[str], bool] = _never) -> None:
    """Finish what a crash interrupted in `staged_directory`'s two renames: with no new version,
    put the old one back; with both, move the kept entries of the old one into the new one (where
    they were not hard-linked already) and drop the rest."""
    retired = _retired(target)
    if not retired.exists():
        return
    if not target.exists():
        os.replace(retired, target)
        return
    _carry_over(retired, target, keep)
    shutil.rmtree(retired, ignore_errors=True)
