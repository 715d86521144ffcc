"""onnxruntime-web's files for the web export, from the npm registry: one pinned release, its
tarball checked against the registry's sha512 integrity, the three files a WASM-only page needs
unpacked. `make install` fetches them into the environment (<venv>/share/headstart/), while the
registry is reachable; an export afterwards needs no network. Elsewhere the first web export
fetches them into headstart's cache. `HEADSTART_NPM_REGISTRY` points at a mirror.

    python -m headstart.export.formats.web.onnxruntime_web   # fetch into this environment now
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shutil
import sys
import tarfile
import urllib.request
from pathlib import Path

from ....errors import HeadstartError
from ....fsutil import cache_root, remove_stale_staging, staging_folder

VERSION = "1.31.1"
INTEGRITY = "sha512-5GeH+bWQ+HxM10z7erGlsWqryrwMbSvm/1tkIsKTT48g0fI19VXVVC435t4t7VsPdSQeS7NmuZPXrQ73k82URw=="
# The WASM-only bundle (CPU, SIMD; threads where the page is cross-origin isolated) and its module.
FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
REGISTRY = "https://registry.npmjs.org"


def tarball_url(registry: str | None = None) -> str:
    """Where the pinned release's tarball is, on `registry` (default: HEADSTART_NPM_REGISTRY or npm's)."""
    base = (registry or os.environ.get("HEADSTART_NPM_REGISTRY") or REGISTRY).rstrip("/")
    return f"{base}/onnxruntime-web/-/onnxruntime-web-{VERSION}.tgz"


INSTALLED = Path(sys.prefix) / "share" / "headstart" / f"onnxruntime-web-{VERSION}"  # make install's


def folder() -> Path:
    """The cache folder that holds (or will hold) the files when the environment has none."""
    return cache_root() / f"onnxruntime-web-{VERSION}"


def complete(place: Path) -> bool:
    """Whether `place` holds every file."""
    return all((place / name).is_file() for name in FILES)


def check_integrity(data: bytes, url: str) -> None:
    """Refuse a tarball whose sha512 is not the pinned release's (a mirror's mistake, a tampered copy)."""
    digest = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    if digest != INTEGRITY:
        expected = INTEGRITY[:27]
        raise HeadstartError(f"{url}: not onnxruntime-web {VERSION} (sha512 {digest[:27]}…, expected {expected}…)")


def runtime_files(registry: str | None = None, into: Path | None = None, timeout: float = 120) -> Path:
    """The folder with onnxruntime-web's `FILES`: the environment's, else the cache's, fetched and
    unpacked first (into `into`, default the cache) when neither has them."""
    for place in (INSTALLED, folder()) if into is None else (into,):
        if complete(place):
            return place
    target = into or folder()
    url = tarball_url(registry)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            data = response.read()
    except OSError as e:
        raise HeadstartError(
            f"{url}: can't fetch onnxruntime-web {VERSION} for the web export ({e}); run `make install` "
            "where the npm registry is reachable, or set HEADSTART_NPM_REGISTRY to a mirror"
        ) from None
    check_integrity(data, url)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)
    staging = staging_folder(target)
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
            for name in FILES:
                member = archive.extractfile(f"package/dist/{name}")
                if member is None:
                    raise HeadstartError(f"{url}: has no dist/{name}")
                (staging / name).write_bytes(member.read())
        shutil.rmtree(target, ignore_errors=True)  # a partial folder from an older, interrupted run
        os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


if __name__ == "__main__":
    print(runtime_files(into=INSTALLED))
