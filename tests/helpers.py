"""Test data made in code."""

import shutil
from pathlib import Path

import numpy as np
from PIL import Image


def make_image(path: Path, colour=(200, 30, 30), size=(64, 48), mode="RGB", fmt=None, seed=0) -> Path:
    """A small noisy image of a dominant colour (noise so that no two files are identical)."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour, np.float32) + rng.normal(0, 25, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if mode != "RGB":
        image = image.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


def write_y4m(images: list[Path], path: Path, size=(320, 240), fps: int = 10, repeat: int = 3) -> Path:
    """A raw 4:2:0 video (what Chromium's fake camera plays) of `images`, each held `repeat` frames."""
    w, h = size
    with open(path, "wb") as f:
        f.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for p in images:
            y, cb, cr = Image.open(p).convert("RGB").resize(size).convert("YCbCr").split()
            planes = y.tobytes() + cb.resize((w // 2, h // 2)).tobytes() + cr.resize((w // 2, h // 2)).tobytes()
            for _ in range(repeat):
                f.write(b"FRAME\n" + planes)
    return path


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def browser_with_camera(playwright, clip: Path):
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (make test installs it: apt-get install chromium)"
    return playwright.chromium.launch(
        executable_path=CHROMIUM,
        headless=True,
        args=[
            "--no-sandbox",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}",
            "--disable-background-networking",
            "--disable-component-update",
        ],
    )
