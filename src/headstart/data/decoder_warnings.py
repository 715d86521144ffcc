"""Pillow's warnings while decoding a file ("Corrupt EXIF data", "Truncated File Read"...), caught
per thread and kept as that file's notes instead of reaching the terminal as raw library output.

`warnings.catch_warnings` cannot do this: it swaps the process-wide filter list, so decoder
threads entering and leaving it at different times let warnings through and can leave "ignore"
installed for the whole program (Python 3.14's context-aware warnings fix that; 3.11 has none).
Instead one filter shows Pillow's warnings every time and one `showwarning` hook sends them to
the list of the thread that is decoding; anywhere else they go on to the previous hook, once per
message, as Python's default filter would have shown them.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

_local = threading.local()
_lock = threading.Lock()
_FILTER = ("always", None, Warning, r"PIL(\.|$)")  # (action, message, category, module regex)
_shown_elsewhere: set[tuple[str, str]] = set()


def _show(message, category, filename, lineno, file=None, line=None):
    notes = getattr(_local, "notes", None)
    if notes is not None:
        text = " ".join(str(message).split())  # Pillow's messages hold double spaces and newlines
        if text not in notes:
            notes.append(text)
        return
    key = (str(message), filename)
    if key not in _shown_elsewhere:  # outside decoding: as the default filter would, once
        _shown_elsewhere.add(key)
        _previous(message, category, filename, lineno, file, line)


_previous = warnings.showwarning


def _install() -> None:
    """(Re)install the filter and the hook: a `catch_warnings` block elsewhere (a test runner, the
    user's code) may have put its own in place since the last decode."""
    global _previous
    if warnings.showwarning is not _show or not _filter_first():
        with _lock:
            if warnings.showwarning is not _show:
                _previous = warnings.showwarning
                warnings.showwarning = _show
            if not _filter_first():
                action, _, category, module = _FILTER
                warnings.filterwarnings(action, category=category, module=module)


def _filter_first() -> bool:
    first = warnings.filters[0] if warnings.filters else None
    return (
        first is not None
        and first[0] == "always"
        and first[2] is Warning
        and getattr(first[3], "pattern", None) == _FILTER[3]
    )


@contextmanager
def decoder_notes() -> Iterator[list[str]]:
    """A list that collects, one line each and without repeats, the warnings Pillow gives on
    this thread inside the block."""
    _install()
    notes: list[str] = []
    outer = getattr(_local, "notes", None)
    _local.notes = notes
    try:
        yield notes
    finally:
        _local.notes = outer
