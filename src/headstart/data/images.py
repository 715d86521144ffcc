"""Decode any image file a user is likely to have into an RGB PIL image, or say why not."""

from __future__ import annotations

import errno
import glob
import io
import os
import stat
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import HeadstartError
from .decoder_warnings import decoder_notes

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff"}
)
# Limits, checked before decoding, so that one file never costs more than a bounded amount of memory
# (measured in tests/test_limits.py). Large JPEGs pass: they are decoded at 1/2 to 1/8 scale (draft mode).
MAX_FILE_BYTES = 100 << 20  # a 50 Mpx photo is 10-30 MB as a JPEG, at most 150 MB as an 8-bit RGB TIFF
MAX_PIXELS = 50_000_000  # of the decoded image: 150 MB as RGB, whatever the file's bit depth
Image.MAX_IMAGE_PIXELS = None  # replaced by the MAX_PIXELS check, which also sees JPEG's reduced decoding


class ImageDecodeError(HeadstartError):
    """One file could not be used; the message is the reason, the caller knows the path."""


def is_image_path(path: Path) -> bool:
    """Whether the file name has an image suffix headstart decodes."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


def walk_files(folder: Path, unreadable: dict[Path, str] | None = None) -> Iterator[Path]:
    """Every entry below `folder` that is not a folder (files, pipes, sockets, devices and symbolic
    links even when broken or looping, so that they are reported rather than lost), recursively and
    sorted; hidden files and folders left out. Symbolic links to folders are yielded, not followed
    (no loops). A folder that cannot be listed (no permission, a path longer than the system allows)
    is recorded in `unreadable` with the reason and the walk goes on."""

    def listing(path: Path) -> list[os.DirEntry]:
        """The folder's visible entries, last name first (popped in name order); none if unreadable."""
        try:
            with os.scandir(path) as it:
                return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name, reverse=True)
        except OSError as e:
            if unreadable is not None:
                unreadable[path] = unreadable_folder(path, e)
            return []

    pending = [listing(Path(folder))]  # a stack, not recursion: folders may nest thousands deep
    while pending:
        if not pending[-1]:
            pending.pop()
            continue
        entry = pending[-1].pop()
        try:
            is_folder = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_folder = False
        if is_folder:
            pending.append(listing(Path(entry.path)))
        else:
            yield Path(entry.path)


def unreadable_folder(folder: Path, e: OSError) -> str:
    """Why a folder could not be listed."""
    if e.errno == errno.ENAMETOOLONG:
        return _too_long(folder)
    return f"folder cannot be read ({e.strerror or e})"


def _too_long(path: Path) -> str:
    try:
        limit = os.pathconf("/", "PC_PATH_MAX")
    except (OSError, ValueError):
        limit = 4096
    return f"path too long for this system ({len(os.fsencode(path))} bytes; the limit is {limit})"


_SPECIAL = {
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def not_a_regular_file(path: Path) -> str | None:
    """Why `path` is not a file to open, judged without opening it (opening a pipe blocks, a device
    may act): a pipe, socket, device or folder, or a link to one. None for regular files, and for
    names that cannot be looked up (broken or looping links, too long): reading them says why."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "symbolic link to a folder (not followed)" if os.path.islink(path) else "a folder, not a file"
    return _not_regular(mode)


def _not_regular(mode: int) -> str:
    return f"{_SPECIAL.get(stat.S_IFMT(mode), 'a special file')}, not a regular file"


def collect_images(inputs: Iterable[str | Path]) -> tuple[list[Path], dict[Path, str]]:
    """Expand files, folders (recursively, image types only) and glob patterns into image paths,
    in order and without repeats; inputs that name nothing are returned with the reason, as are
    folders inside that cannot be listed."""
    paths: list[Path] = []
    missing: dict[Path, str] = {}
    for item in inputs:
        p = Path(item).expanduser()
        mode, error = None, None
        try:
            mode = os.stat(p).st_mode
        except (OSError, ValueError) as e:
            error = e
        if mode is not None and stat.S_ISDIR(mode):
            found = [f for f in walk_files(p, missing) if is_image_path(f)]
            paths += found
            if not found and p not in missing:
                missing[p] = "folder holds no image files"
        elif mode is not None or os.path.islink(p):
            paths.append(p)  # a broken link, a pipe or a device is reported when it is read
        elif any(ch in str(item) for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True) if not os.path.isdir(m))
            paths += matches
            if not matches:
                missing[p] = "pattern matched no file"
        elif getattr(error, "errno", None) == errno.ENAMETOOLONG:
            missing[p] = _too_long(p)
        else:
            missing[p] = "no such file or folder"
    return list(dict.fromkeys(paths)), missing


# How `decode` shortcuts large images; part of the feature cache's key, so that features decoded
# another way are never reused. 2: JPEG draft mode keeps twice `min_size` (it kept `min_size`).
DECODE_VERSION = 2


def decode(data: bytes, min_size: int | None = None, notes: list[str] | None = None) -> Image.Image:
    """Decode image bytes to RGB with EXIF orientation applied.

    `min_size` lets JPEG decoding use DCT scaling (Pillow's draft mode) to skip pixels that the
    later resize would throw away anyway: several times faster for large photos. It keeps at least
    twice `min_size` on the short side, so that the crop differs from one of the fully decoded
    photo (what an exported model given a whole image sees) by about 1e-3 in probability; keeping
    `min_size` alone made 0.06 on alpaca (measured: the draft factor in the README). What Pillow
    warns about on the way (a corrupt EXIF block, say) is added to `notes`, never printed.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with decoder_notes() as caught:
            image = Image.open(io.BytesIO(data))
            if min_size and image.format == "JPEG":
                image.draft("RGB", (2 * min_size, 2 * min_size))
            width, height = image.size  # from the header: nothing decoded yet
            if width * height > MAX_PIXELS:
                raise ImageDecodeError(
                    f"too large to decode safely ({width}×{height} = {width * height / 1e6:.0f} Mpx; "
                    f"the limit is {MAX_PIXELS / 1e6:.0f} Mpx)"
                )
            image.load()
            if min_size and min(image.size) >= 4 * min_size:
                rgb = to_rgb(_shrink(image, min_size))
            else:
                rgb = to_rgb(ImageOps.exif_transpose(image))
    except UnidentifiedImageError as e:
        raise ImageDecodeError(_reason(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, struct.error) as e:  # truncated or corrupt
        raise ImageDecodeError(f"corrupt or truncated image ({_reason(e)})") from None
    if notes is not None:
        notes += caught
    return rgb


_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _shrink(image: Image.Image, min_size: int) -> Image.Image:
    """Box-average an image far larger than needed to twice `min_size` on its short side, as
    JPEG's draft mode does while decoding, so that conversions and EXIF rotation touch few pixels.
    Keeps the peak memory of a 50 Mpx PNG of any mode to a few hundred MB."""
    orientation = image.getexif().get(0x0112, 1)
    if image.mode == "1" or image.mode.startswith("I;16"):
        image = image.convert("L" if image.mode == "1" else "I")  # modes reduce() can't take
    elif image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    image = image.reduce(min(image.size) // (2 * min_size))
    return image.transpose(_ORIENT[orientation]) if orientation in _ORIENT else image


def _reason(e: Exception) -> str:
    text = str(e).split(" '<_io.BytesIO")[0].strip() or type(e).__name__
    if text.startswith("cannot identify image file"):
        return "not a recognised image format"
    return text


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to RGB: transparency over white, 16/32-bit greyscale rescaled, CMYK converted."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # A writable float32 copy, scaled in place: 4 bytes a pixel at most. (np.asarray of an 'F'
        # image is a read-only view of Pillow's buffer.)
        a = np.array(image, dtype=np.float32)
        finite = np.isfinite(a)
        if not finite.all():  # no-data pixels (NaN, inf) of a float TIFF: black, the rest still scaled
            a[~finite] = a[finite].min() if finite.any() else 0.0
        del finite
        lo, hi = float(a.min()), float(a.max())
        if hi <= lo:
            a = np.zeros(a.shape, np.uint8)
        else:
            a -= lo
            a *= 255.0 / (hi - lo)
            a = np.rint(a, out=a).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info or image.mode in ("PA", "LA", "RGBA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def read_file(path: Path, limit: int = MAX_FILE_BYTES) -> bytes:
    """A regular file's bytes, refused before reading when over `limit`; raises ImageDecodeError
    with a reason. Pipes, sockets and devices are refused unopened."""
    path = Path(path)
    if (why := not_a_regular_file(path)) is not None:
        raise ImageDecodeError(why)
    try:
        # Non-blocking: a file swapped for a pipe after the check above still never blocks here.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise ImageDecodeError(_not_regular(st.st_mode))
            if st.st_size > limit:
                raise ImageDecodeError(f"file too large ({st.st_size / 2**20:.0f} MB; the limit is {limit >> 20} MB)")
            data = f.read(limit + 1)  # a file that grew is still bounded
    except OSError as e:
        raise ImageDecodeError(_unreadable(path, e)) from None
    if len(data) > limit:
        raise ImageDecodeError(f"file too large (over the {limit >> 20} MB limit)")
    return data


def _unreadable(path: Path, e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return "symbolic link loop"
    if e.errno == errno.ENAMETOOLONG:
        return _too_long(path)
    if os.path.islink(path) and not os.path.exists(path):
        return "broken symbolic link (its target is missing)"
    if e.errno == errno.EISDIR:
        return "a folder, not a file"
    return f"cannot read file ({e.strerror or e})"


def load_image(path: Path, min_size: int | None = None) -> Image.Image:
    """Read and decode one file; raises ImageDecodeError with a reason."""
    return decode(read_file(path), min_size)
