"""Each report figure is drawn once per distinct input: its PNG is cached under a hash of what it
shows (arrays, numbers, file names with their sizes and times) and of the plotting code.

Drawing the report's seven figures takes about a second here, plus 0.4 s to import matplotlib;
a report of a model already reported (`headstart report` after `train`, or a retrain that gives
the same model) reads them back without importing matplotlib at all (bench/train_speed.py).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..fsutil import atomic_write_bytes, cache_file
from ..version import __version__

FOLDER = "figures"
BUDGET_BYTES = 256 << 20  # least recently used figures go beyond this
# The modules whose code decides what a figure looks like: editing one redraws everything.
PLOTTING_CODE = ("plots.py", "contact_sheet.py", "calibration.py")


@dataclass
class FigureSpec:
    """One figure to draw: `build()` gives a matplotlib Figure, a PIL image or PNG bytes, and
    depends on nothing but `inputs` (None: never cached)."""

    name: str
    inputs: object
    build: Callable[[], object]


def content_key(value) -> str:
    """A stable hash of nested dicts, lists, arrays, paths and scalars."""
    digest = hashlib.sha256()
    _feed(digest, value)
    return digest.hexdigest()


def _feed(digest, value) -> None:
    if isinstance(value, np.ndarray):
        digest.update(f"array{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, Mapping):
        digest.update(b"{")
        for key in sorted(value, key=str):
            _feed(digest, str(key))
            _feed(digest, value[key])
        digest.update(b"}")
    elif isinstance(value, (list, tuple)):
        digest.update(b"[")
        for item in value:
            _feed(digest, item)
        digest.update(b"]")
    else:  # str, Path, numbers, None: their repr tells them apart ('1' from 1)
        digest.update(repr(str(value) if isinstance(value, Path) else value).encode() + b";")


def file_stamps(paths) -> list | None:
    """(absolute name, size, modification time) of each file, or None when one can't be read: what
    a figure showing those images depends on, however the folder was named on the command line."""
    try:
        return [(os.path.abspath(p), (s := os.stat(p)).st_size, s.st_mtime_ns) for p in paths]
    except OSError:
        return None


@functools.cache
def _code_version(extra: str | None = None) -> str:
    """A hash of the plotting code and of `extra`, the file that defines a figure's `build`."""
    here = Path(__file__).parent
    files = [here / name for name in PLOTTING_CODE] + ([Path(extra)] if extra else [])
    return content_key([__version__, *(hashlib.sha256(path.read_bytes()).hexdigest() for path in files)])


def _defining_file(build: Callable) -> str | None:
    """The source file of the function behind `build` (a lambda, a bound method, a partial)."""
    target = getattr(build, "func", build)  # functools.partial
    target = getattr(target, "__func__", target)  # a bound method
    try:
        return inspect.getsourcefile(target)
    except TypeError:  # a builtin or a callable object: nothing to hash
        return None


def render(figure: FigureSpec) -> bytes:
    """The figure's PNG: from the cache when these inputs were drawn before, else drawn (and kept)."""
    if figure.inputs is None:
        return _draw(figure)
    code = _code_version(_defining_file(figure.build))
    path = cache_file(FOLDER, f"{figure.name}-{content_key([code, figure.inputs])[:32]}.png")
    try:
        png = path.read_bytes()
        os.utime(path)  # recently used: kept by prune()
        return png
    except OSError:
        pass
    png = _draw(figure)
    try:
        atomic_write_bytes(path, png)
        prune(path.parent)
    except OSError:
        pass  # only a cache
    return png


def _draw(figure: FigureSpec) -> bytes:
    drawn = figure.build()
    if isinstance(drawn, bytes):
        return drawn
    from .plots import png_bytes  # matplotlib: imported only when something is drawn

    return png_bytes(drawn)


def prune(folder: Path, budget: int = BUDGET_BYTES) -> None:
    """Delete the least recently used PNGs until the folder holds at most `budget` bytes."""
    entries = []
    with os.scandir(folder) as it:
        for entry in it:
            if entry.name.endswith(".png") and entry.is_file():
                stat = entry.stat()
                entries.append((stat.st_mtime_ns, stat.st_size, entry.path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= budget:
            break
        Path(path).unlink(missing_ok=True)
        total -= size
