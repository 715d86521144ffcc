"""`Registry`: one table per extension point (backbones, export formats, report figures), declared
once and read by every surface: the CLI's choices and help, `headstart.load`, the studio's API, the
report and the README's tables.

Entries register themselves where they are defined (`register`), the way timm's
`@register_model` does; the modules holding the built-in entries are imported on the first lookup,
so that reading a registry costs only what its entries' own modules cost (none imports torch).
Outside code adds an entry the same way, and `registered(entry)` adds one for the length of a block
(tests, plugins tried out in a notebook).
"""

from __future__ import annotations

import importlib
import pkgutil
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

from .errors import HeadstartError


class Named(Protocol):
    """What a registry holds: anything with a unique `name`."""

    name: str


Entry = TypeVar("Entry", bound=Named)


class Registry(Mapping[str, Entry]):
    """Entries by name: a read-only mapping (`names()`, `values()`, `registry[name]`) that
    `register` adds to; `lookup(name)` is the lookup that fails with a one-line `HeadstartError`.

    Args:
        kind: what the entries are, for messages ("backbone", "export format").
        builtins: a package whose every module (not starting with "_") registers built-in entries
            when imported; imported on first use.
        order: sort key of the entries (default: registration order, which for built-ins depends on
            which of their modules was imported first; give a key where the order is shown).

    Example:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Colour:
        ...     name: str
        >>> colours = Registry("colour")
        >>> red = colours.register(Colour("red"))
        >>> with colours.registered(Colour("blue")):
        ...     colours.names()
        ['red', 'blue']
        >>> colours.names(), colours.lookup("red") is red
        (['red'], True)
        >>> colours.lookup("green")
        Traceback (most recent call last):
        headstart.errors.HeadstartError: unknown colour 'green'; choose one of: red
    """

    def __init__(self, kind: str, builtins: str | None = None, order: Callable[[Entry], Any] | None = None):
        self.kind = kind
        self._builtins = builtins
        self._order = order
        self._entries: dict[str, Entry] = {}
        self._loaded = builtins is None
        self._lock = threading.RLock()

    def _load(self) -> None:
        if self._loaded:
            return
        with self._lock:
            if self._loaded:
                return
            self._loaded = True  # set first: the modules imported below call register()
            package = importlib.import_module(self._builtins)
            for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
                if not module.name.startswith("_"):
                    importlib.import_module(f"{self._builtins}.{module.name}")

    def register(self, entry: Entry, *, replace: bool = False) -> Entry:
        """Add `entry` (returned, so that a module can keep it); a taken name is an error unless `replace`."""
        self._load()
        with self._lock:
            if entry.name in self._entries and not replace:
                raise HeadstartError(f"a {self.kind} named {entry.name!r} is already registered")
            self._entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        """Remove an entry (a name not registered is ignored)."""
        self._load()
        with self._lock:
            self._entries.pop(name, None)

    @contextmanager
    def registered(self, entry: Entry) -> Iterator[Entry]:
        """`entry` registered for the block, removed afterwards."""
        self.register(entry)
        try:
            yield entry
        finally:
            self.unregister(entry.name)

    def lookup(self, name: str) -> Entry:
        """The entry called `name`, or a one-line error listing the choices."""
        try:
            return self[name]
        except KeyError:
            raise HeadstartError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self)}") from None

    def names(self) -> list[str]:
        """Every registered name, in the registry's order."""
        return list(self)

    def _sorted(self) -> list[Entry]:
        self._load()
        with self._lock:
            entries = list(self._entries.values())
        return sorted(entries, key=self._order) if self._order else entries

    def __getitem__(self, name: str) -> Entry:
        self._load()
        return self._entries[name]

    def __iter__(self) -> Iterator[str]:
        return iter([entry.name for entry in self._sorted()])

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}: {', '.join(self)})"
