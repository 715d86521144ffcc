import io

import numpy as np
import pytest
import torch
from PIL import Image

from headstart.data.images import ImageDecodeError, decode, load_image
from headstart.inference.graph import Normalize
from headstart.preprocessing import Preprocessing


def encode(image: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **kw)
    return buf.getvalue()


RED = Image.new("RGB", (40, 30), (250, 10, 10))


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"])
def test_every_supported_format_decodes_to_rgb(fmt):
    image = decode(encode(RED, fmt))
    assert image.mode == "RGB" and image.size == (40, 30)
    r, g, b = image.getpixel((20, 15))
    assert r > 200 and g < 60 and b < 60


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "LA", "RGBA", "I;16"])
def test_every_mode_becomes_rgb(mode):
    source = Image.new("RGB", (16, 16), (120, 120, 120)).convert(mode)
    fmt = "TIFF" if mode in ("CMYK",) else "PNG"
    image = decode(encode(source, fmt))
    assert image.mode == "RGB"


def test_transparency_is_composited_on_white():
    rgba = Image.new("RGBA", (8, 8), (0, 0, 0, 0))  # fully transparent black
    assert decode(encode(rgba, "PNG")).getpixel((4, 4)) == (255, 255, 255)


def test_sixteen_bit_greyscale_keeps_its_contrast():
    a = np.zeros((8, 8), np.uint16)
    a[:, 4:] = 40000  # bright half, far above 255
    image = decode(encode(Image.fromarray(a), "PNG"))
    assert image.getpixel((0, 0)) == (0, 0, 0) and image.getpixel((7, 0)) == (255, 255, 255)


def test_exif_orientation_is_applied():
    wide = Image.new("RGB", (60, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    image = decode(encode(wide, "JPEG", exif=exif.tobytes()))
    assert image.size == (20, 60)


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "empty file"),
        (b"this is a text file, not a picture", "not a recognised image format"),
        (encode(RED.resize((400, 300)), "JPEG")[:600], "truncated"),
    ],
)
def test_bad_bytes_say_why(data, reason):
    with pytest.raises(ImageDecodeError, match=reason):
        decode(data)


def test_unreadable_path_says_why(tmp_path):
    with pytest.raises(ImageDecodeError, match="cannot read file"):
        load_image(tmp_path / "missing.png")


def test_draft_mode_keeps_enough_pixels_for_the_crop():
    big = Image.new("RGB", (2000, 1500), (10, 200, 10))
    image = decode(encode(big, "JPEG"), min_size=256)
    assert min(image.size) >= 256 and image.size[0] < 2000  # shrunk by DCT scaling, but not below the resize


def test_preprocessing_crops_the_centre_and_normalises():
    pp = Preprocessing()
    image = Image.new("RGB", (500, 300), (124, 116, 104))  # about the ImageNet mean colour
    image.paste((255, 0, 0), (0, 0, 60, 300))  # a red band that the centre crop must cut away
    x = pp(image)
    assert x.shape == (224, 224, 3) and x.dtype == np.uint8
    assert x[:, 0, 0].min() < 200  # no red at the left edge of the crop
    normalised = Normalize(pp)(torch.from_numpy(x)[None])
    assert normalised.shape == (1, 3, 224, 224) and normalised.abs().max() < 0.05


@pytest.mark.parametrize("side, min_size", [(64, None), (64, 224), (1200, 224)])  # 1200: the box-reduction path
def test_a_32_bit_float_tiff_decodes_scaled_to_its_range(side, min_size):
    ramp = np.tile(np.linspace(-3.5, 1000.0, side, dtype=np.float32), (side, 1))
    ramp[0, 0], ramp[0, 1] = np.nan, np.inf  # no-data pixels must not black out the rest
    image = decode(encode(Image.fromarray(ramp, "F"), "TIFF"), min_size)
    grey = np.asarray(image)[..., 0].astype(int)
    assert image.mode == "RGB" and grey.min() == 0 and grey.max() == 255
    assert np.all(np.diff(grey[side // 2 if min_size is None or side < 4 * min_size else 2]) >= 0)  # still a ramp


CORRUPT_EXIF = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\xff\xff\xff\x7f\x01\x00\x00\x00"

WARNINGS_UNDER_THREADS = """
import io, sys, warnings
from concurrent.futures import ThreadPoolExecutor
from PIL import Image
from headstart.data.images import decode

buf = io.BytesIO()
Image.new("RGB", (300, 300), (90, 60, 30)).save(buf, "JPEG", exif=EXIF)
data = buf.getvalue()

def one(_):
    notes = []
    decode(data, 224, notes=notes)
    return notes

with ThreadPoolExecutor(8) as pool:
    notes = list(pool.map(one, range(400)))
print(sum(1 for n in notes if any("Corrupt EXIF data" in line for line in n)), len(notes))
warnings.warn("the program's own warning")  # must still reach the terminal: no 'ignore' left behind
"""


def test_decoder_warnings_become_notes_per_file_and_never_reach_the_terminal():
    """Pillow warns on a corrupt EXIF block: with eight threads decoding, every file gets the note,
    nothing is printed, and the program's own warnings are not silenced afterwards (which
    warnings.catch_warnings, process-wide, did to them)."""
    import subprocess
    import sys

    script = WARNINGS_UNDER_THREADS.replace("exif=EXIF", f"exif={CORRUPT_EXIF!r}")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["400", "400"]
    assert "Corrupt EXIF" not in proc.stderr and "the program's own warning" in proc.stderr
