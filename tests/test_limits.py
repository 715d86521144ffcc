"""Bounded memory per image: limits by bytes and pixels are checked before decoding, and the
worst image inside the limits decodes within a stated bound, measured in a fresh process."""

import io
import subprocess
import sys

import pytest
from PIL import Image

from headstart.data.images import MAX_FILE_BYTES, MAX_PIXELS, ImageDecodeError, decode, load_image

PEAK_BOUND_MB = 512  # above the interpreter's own footprint; the README states this number

# VmHWM (peak resident memory of this process image), not ru_maxrss: that one carries the parent's
# peak across fork and exec, so a child of a big pytest process would report nothing.
MEASURE = """
import sys
from pathlib import Path
from headstart.data.images import load_image
def peak_kb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM")).split()[1])
base = peak_kb()
image = load_image(Path(sys.argv[1]), 256)
print(image.size[0], image.size[1], (peak_kb() - base) // 1024)
"""


def png(mode: str, side: int, colour, **info) -> bytes:
    image = Image.new(mode, (side, side), colour)
    image.info.update(info)
    buf = io.BytesIO()
    image.save(buf, "PNG", **info)
    return buf.getvalue()


@pytest.mark.parametrize(
    "mode, colour, info",
    [
        ("1", 1, {}),
        ("I;16", 300, {}),
        ("RGBA", (10, 20, 30, 128), {}),
        ("LA", (10, 128), {}),
        ("P", 3, {"transparency": 3}),
        ("RGB", (9, 9, 9), {}),
    ],
)
def test_the_worst_image_within_the_limits_decodes_in_bounded_memory(tmp_path, mode, colour, info):
    side = int(MAX_PIXELS**0.5) - 1  # just under the pixel limit, in each pixel format
    path = tmp_path / "worst.png"
    path.write_bytes(png(mode, side, colour, **info))
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    width, height, peak_mb = map(int, out.stdout.split())
    assert min(width, height) >= 256
    print(f"{mode}: {path.stat().st_size >> 10} KB file, {side}x{side}, peak +{peak_mb} MB")
    assert peak_mb < PEAK_BOUND_MB


def test_a_pixel_bomb_is_refused_from_its_header(tmp_path):
    bomb = png("1", 17_000, 1)  # 289 Mpx in 35 KB
    assert len(bomb) < 100_000
    with pytest.raises(ImageDecodeError, match="too large to decode safely"):
        decode(bomb)


def test_a_huge_jpeg_passes_through_reduced_decoding(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (9000, 7000), (200, 10, 10)).save(buf, "JPEG")  # 63 Mpx: over the limit at full size
    with pytest.raises(ImageDecodeError):
        decode(buf.getvalue())
    assert decode(buf.getvalue(), min_size=256).size == (1125, 875)  # decoded at 1/8 scale


def test_a_file_over_the_byte_limit_is_refused_before_reading(tmp_path):
    big = tmp_path / "huge.jpg"
    with open(big, "wb") as f:  # sparse: costs no disk
        f.truncate(2 << 30)
    with pytest.raises(ImageDecodeError, match="file too large"):
        load_image(big)
    assert MAX_FILE_BYTES < 2 << 30
