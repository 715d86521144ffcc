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
