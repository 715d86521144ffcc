"""onnxruntime-web's files for the web export: fetched from an npm registry (here one on loopback),
checked against the pinned sha512 integrity, unpacked into the cache, refused when they differ."""

import base64
import functools
import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from headstart.errors import HeadstartError
from headstart.export.formats.web import onnxruntime_web


def npm_tarball(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(f"package/dist/{name}")
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture
def registry(tmp_path, monkeypatch):
    """A registry on 127.0.0.1 serving one tarball at npm's path for the pinned version; an empty cache."""
    folder = tmp_path / "registry" / "onnxruntime-web" / "-"
    folder.mkdir(parents=True)
    monkeypatch.setenv("HEADSTART_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(onnxruntime_web, "INSTALLED", tmp_path / "venv-share")  # not make install's copy
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path / "registry"))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    yield url, folder / f"onnxruntime-web-{onnxruntime_web.VERSION}.tgz"
    server.shutdown()
    server.server_close()


def test_the_files_are_fetched_checked_and_unpacked_once(registry, monkeypatch):
    url, tarball = registry
    files = {name: f"contents of {name}".encode() for name in onnxruntime_web.FILES}
    data = npm_tarball(files | {"ort.all.js": b"not needed"})
    tarball.write_bytes(data)
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()
    monkeypatch.setattr(onnxruntime_web, "INTEGRITY", integrity)
    folder = onnxruntime_web.runtime_files(url)
    assert sorted(p.name for p in folder.iterdir()) == sorted(files)
    assert all((folder / name).read_bytes() == data for name, data in files.items())
    tarball.unlink()  # cached now: no second fetch
    assert onnxruntime_web.runtime_files(url) == folder


def test_a_tarball_that_is_not_the_pinned_release_is_refused(registry):
    url, tarball = registry
    tarball.write_bytes(npm_tarball({name: b"tampered" for name in onnxruntime_web.FILES}))
    with pytest.raises(HeadstartError, match=r"not onnxruntime-web 1\.31\.1 \(sha512 .*expected sha512-5GeH"):
        onnxruntime_web.runtime_files(url)
    assert not onnxruntime_web.folder().exists()  # nothing unpacked


def test_an_unreachable_registry_says_how_to_get_the_files(registry):
    url, _ = registry  # serves nothing at the tarball's path: 404
    with pytest.raises(HeadstartError, match="can't fetch onnxruntime-web 1.31.1 .* HEADSTART_NPM_REGISTRY"):
        onnxruntime_web.runtime_files(url)
