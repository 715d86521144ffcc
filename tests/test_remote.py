import hashlib
import http.server
import socket
import threading
import zipfile
from pathlib import Path

import pytest

from headstart.data.dataset import scan
from headstart.data.remote import REMOTE_DATASETS, Archive, RemoteDataset, fetch
from headstart.errors import HeadstartError

from .helpers import make_image


@pytest.fixture
def server(tmp_path):
    """A loopback HTTP server over tmp_path/www, stopped after the test."""
    www = tmp_path / "www"
    www.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(www), **kw)

        def log_message(self, *args):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield www, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def make_zip(path: Path, top: str, tmp: Path) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for cls in ("rock", "paper"):
            for i in range(3):
                img = make_image(tmp / top / cls / f"{i}.png", seed=i + 10 * len(cls))
                zf.write(img, f"{top}/{cls}/{i}.png")
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_download_verify_unpack_once(server, tmp_path):
    www, base = server
    sha_train = make_zip(www / "rps.zip", "rps", tmp_path / "src")
    sha_test = make_zip(www / "rps-test-set.zip", "rps-test-set", tmp_path / "src")
    ds = RemoteDataset(
        "mini_rps",
        "test",
        (
            Archive(f"{base}/rps.zip", sha_train, "train", "rps"),
            Archive(f"{base}/rps-test-set.zip", sha_test, "test", "rps-test-set"),
        ),
    )
    dest = fetch(ds, tmp_path / "cache" / "mini_rps")
    scanned = scan(dest)
    assert scanned.presplit and scanned.classes == ["paper", "rock"]
    assert sum(scanned.counts()["test"].values()) == 6
    (www / "rps.zip").unlink()  # a second call must not download again
    assert fetch(ds, dest) == dest


def test_wrong_checksum_is_refused_and_nothing_kept(server, tmp_path):
    www, base = server
    make_zip(www / "rps.zip", "rps", tmp_path / "src")
    ds = RemoteDataset("mini", "test", (Archive(f"{base}/rps.zip", "0" * 64, "train", "rps"),))
    with pytest.raises(HeadstartError, match="sha256"):
        fetch(ds, tmp_path / "cache")
    assert not list((tmp_path / "cache").glob("*.zip")) and not (tmp_path / "cache" / "train").exists()


def test_offline_says_so_and_suggests_a_folder(tmp_path):
    with socket.socket() as s:  # a port that nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ds = RemoteDataset(
        "rock_paper_scissors", "t", (Archive(f"http://127.0.0.1:{port}/rps.zip", "0" * 64, "train", "rps"),)
    )
    with pytest.raises(
        HeadstartError, match="cannot download rock_paper_scissors .*offline.*headstart train path/to/images"
    ):
        fetch(ds, tmp_path / "c")


def test_rock_paper_scissors_entry_pins_the_official_archives():
    rps = REMOTE_DATASETS["rock_paper_scissors"]
    assert [a.split for a in rps.archives] == ["train", "test"]
    assert all(len(a.sha256) == 64 and a.url.endswith(".zip") for a in rps.archives)
