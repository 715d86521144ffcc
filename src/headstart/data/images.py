"""Decode any image file a user is likely to have into an RGB PIL image, or say why not."""

from __future__ import annotations

import glob
import io
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import HeadstartError

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib", ".webp", ".tif", ".tiff"}
)
Image.MAX_IMAGE_PIXELS = 300_000_000  # photos from large sensors are legitimate; PIL's default warns at 89 Mpx


class ImageDecodeError(HeadstartError):
    """One file could not be used; the message is the reason, the caller knows the path."""


def is_image_path(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def walk_files(folder: Path) -> Iterator[Path]:
    """Every file below `folder`, recursively and sorted, hidden files and folders left out."""
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts):
            yield p


def collect_images(inputs: Iterable[str | Path]) -> tuple[list[Path], dict[Path, str]]:
    """Expand files, folders (recursively, image types only) and glob patterns into image paths,
    in order and without repeats; inputs that name nothing are returned with the reason."""
    paths: list[Path] = []
    missing: dict[Path, str] = {}
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            paths += [f for f in walk_files(p) if is_image_path(f)]
        elif p.is_file():
            paths.append(p)
        elif any(ch in str(item) for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True) if Path(m).is_file())
            paths += matches
            if not matches:
                missing[p] = "pattern matched no file"
        else:
            missing[p] = "no such file or folder"
    return list(dict.fromkeys(paths)), missing


def decode(data: bytes, min_size: int | None = None) -> Image.Image:
    """Decode image bytes to RGB with EXIF orientation applied.

    `min_size` lets JPEG decoding use DCT scaling (Pillow's draft mode) to skip pixels that the
    later resize would throw away anyway: several times faster for large photos.
    """
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if min_size and image.format == "JPEG":
                image.draft("RGB", (min_size, min_size))
            image.load()
            image = ImageOps.exif_transpose(image)
            return to_rgb(image)
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageDecodeError(_reason(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # truncated or corrupt data
        raise ImageDecodeError(f"corrupt or truncated image ({_reason(e)})") from None


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
        a = np.asarray(image, dtype=np.float64)
        lo, hi = float(a.min()), float(a.max())
        a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
        return Image.fromarray(np.round(a).astype(np.uint8), "L").convert("RGB")
    if image.mode == "P" and "transparency" in image.info or image.mode in ("PA", "LA", "RGBA", "La", "RGBa"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: Path, min_size: int | None = None) -> Image.Image:
    """Read and decode one file; raises ImageDecodeError with a reason."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise ImageDecodeError(f"cannot read file ({e.strerror or e})") from None
    return decode(data, min_size)
