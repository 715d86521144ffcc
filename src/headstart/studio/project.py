"""A studio project: a folder laid out as a headstart dataset (`<class>/<images>`), so that
`headstart train PROJECT` works on it too, plus its models under `.headstart/models/` (hidden
folders are never scanned as data). Every path a request names is checked to stay inside."""

from __future__ import annotations

import io
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from ..bundle import is_bundle, users_file
from ..data.images import ImageDecodeError, decode, is_image_path
from ..errors import HeadstartError
from ..fsutil import atomic_write_bytes, settle_all

CLASS_NAME = re.compile(r"^[^/\\\x00-\x1f.][^/\\\x00-\x1f]{0,99}$")  # no separators, not hidden, ≤ 100
NAME_BYTES = 255  # a file name's limit on every common file system (ext4, APFS, NTFS in UTF-16 units)


@dataclass
class Saved:
    """An upload's outcome: the name it was saved under, or why it was refused."""

    name: str
    error: str | None = None


class Project:
    """A studio project folder: its classes (sub-folders), their images, and its models."""

    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().absolute()
        if self.root.exists() and not self.root.is_dir():
            raise HeadstartError(f"{self.root}: not a folder; a studio project is a folder of class folders")
        self.root.mkdir(parents=True, exist_ok=True)
        self.models_dir = self.root / ".headstart" / "models"

    # -- classes
    def classes(self) -> list[str]:
        """The class folders' names, sorted (hidden folders are not classes)."""
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def _class_dir(self, name: str, must_exist: bool = True) -> Path:
        if not name.strip():
            raise HeadstartError("a class needs a name: type one (spaces alone are not a name)")
        if not CLASS_NAME.match(name) or name.strip() != name:
            raise HeadstartError(
                f"{name!r}: not a usable class name (at most 100 characters, no slashes, "
                "not starting with a dot or a space)"
            )
        if len(name.encode()) > NAME_BYTES:  # 100 emoji are 400 bytes: the folder could not be made
            raise HeadstartError(f"{name[:20]!r}...: too long a class name for a folder; use fewer characters")
        path = self.root / name
        if must_exist and not path.is_dir():
            raise HeadstartError(f"no class {name!r}")
        return path

    def add_class(self, name: str) -> None:
        """Make an empty class folder."""
        path = self._class_dir(name, must_exist=False)
        if path.exists():
            raise HeadstartError(f"class {name!r} already exists")
        path.mkdir()

    def rename_class(self, name: str, new: str) -> None:
        """Rename a class folder (its images go with it)."""
        src, dst = self._class_dir(name), self._class_dir(new, must_exist=False)
        if dst.exists():
            raise HeadstartError(f"class {new!r} already exists")
        src.rename(dst)

    def delete_class(self, name: str) -> None:
        """Delete a class folder and its images, from disk."""
        shutil.rmtree(self._class_dir(name))

    # -- images
    def images(self, name: str) -> list[str]:
        """The image files of a class, sorted; hidden ones are not the class's (training skips them too)."""
        folder = self._class_dir(name)
        return sorted(p.name for p in folder.iterdir() if p.is_file() and is_image_path(p) and p.name[0] != ".")

    def image_path(self, name: str, file: str) -> Path:
        """The path of one image of a class; a name that would leave the folder is refused."""
        path = self._class_dir(name) / file
        if Path(file).name != file or file.startswith(".") or not path.is_file():
            raise HeadstartError(f"no image {file!r} in {name!r}")
        return path

    def add_image(self, name: str, filename: str, data: bytes) -> Saved:
        """Keep a file that decodes (as it came); refuse anything else with the reason."""
        folder = self._class_dir(name)
        try:
            decode(data, min_size=16)
        except ImageDecodeError as e:
            return Saved(filename, str(e))
        # Not hidden (a leading dot would hide it from listings and training), not over 60 characters.
        stem = re.sub(r"[^\w.-]+", "_", Path(filename).stem).lstrip(".")[:60] or "image"
        suffix = Path(filename).suffix.lower() if is_image_path(Path(filename)) else ".jpg"
        target = folder / f"{stem}{suffix}"
        n = 1
        while target.exists():
            target, n = folder / f"{stem}-{n}{suffix}", n + 1
        atomic_write_bytes(target, data)
        return Saved(target.name)

    def delete_image(self, name: str, file: str) -> None:
        """Delete one image, from disk."""
        self.image_path(name, file).unlink()

    def move_image(self, name: str, file: str, to: str) -> str:
        """Move an image to another class (renamed if the name is taken there); its new name."""
        src, folder = self.image_path(name, file), self._class_dir(to)
        target, n = folder / file, 1
        while target.exists():
            target, n = folder / f"{Path(file).stem}-{n}{Path(file).suffix}", n + 1
        src.rename(target)
        return target.name

    def thumbnail(self, name: str, file: str, size: int = 160) -> bytes:
        """A JPEG thumbnail of an image, at most `size` px."""
        image = decode(self.image_path(name, file).read_bytes(), min_size=size)
        image.thumbnail((size, size))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=80)
        return buf.getvalue()

    # -- models
    def models(self) -> list[Path]:
        """The project's model bundles, oldest first."""
        if not self.models_dir.is_dir():
            return []
        settle_all(self.models_dir, users_file)  # a save a crash interrupted shows its bundle again
        return sorted(p for p in self.models_dir.iterdir() if is_bundle(p))

    def new_model_dir(self) -> Path:
        """Where the next model is saved: .headstart/models/<date-time>."""
        return self.models_dir / time.strftime("%Y%m%d-%H%M%S")
