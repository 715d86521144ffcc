"""The web export: a static folder (index.html, classify.js, model.onnx, model.json and
onnxruntime-web's files) that classifies camera frames and dropped photos in the browser, offline.
model.onnx is the `onnx` export (whole decoded images in, headstart's crop in the graph), so the
page only decodes; serve the folder from any static server (a camera needs https or localhost).

It is verified like every export: on headstart's crops in onnxruntime, and page-side in Chromium
(onnxruntime-web, each photo decoded by the browser), where Chromium and Playwright are installed.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import threading
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ...registry import PIXELS, ExportFormat, ExportJob, Runtime, register_export_format
from ..onnx import run_onnx, write_onnx

if TYPE_CHECKING:
    import numpy as np

    from ....preprocessing import Preprocessing

PAGE = ("index.html", "classify.js")
MODEL = "model.onnx"


def write_web(job: ExportJob) -> None:
    """The folder: the page, the whole-image ONNX model, its metadata, onnxruntime-web's files."""
    from .onnxruntime_web import FILES, runtime_files

    runtime = runtime_files()  # first: a missing runtime fails before anything is written
    job.target.mkdir()
    write_onnx(ExportJob(job.net, job.target / MODEL, job.model, job.format, job.calibration))
    meta = job.metadata()
    (job.target / "model.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", "utf-8")
    (job.target / "labels.txt").write_text("\n".join(job.model.classes) + "\n", "utf-8")
    for name in PAGE:
        (job.target / name).write_bytes(resources.files(__package__).joinpath(name).read_bytes())
    for name in FILES:
        shutil.copyfile(runtime / name, job.target / name)


def run_web(folder: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The folder's model in onnxruntime, on a batch of crops."""
    return run_onnx(folder / MODEL)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {".mjs": "text/javascript", ".js": "text/javascript", ".wasm": "application/wasm"}

    def log_message(self, *args) -> None:  # a verification is not a web log
        pass


class StaticServer:
    """A folder served on 127.0.0.1 (a free port) from a thread, as `python -m http.server` would."""

    def __init__(self, folder: Path):
        handler = functools.partial(_QuietHandler, directory=str(folder))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


class InChromium:
    """The page in headless Chromium (Playwright), each image file handed to the page as the
    browser would get a dropped file, decoded and classified there; `close()` ends the browser."""

    def __init__(self, folder: Path, chromium: str):
        from playwright.sync_api import sync_playwright

        self.server = StaticServer(folder)
        self.playwright = sync_playwright().start()
        try:
            self.browser = self.playwright.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
            self.page = self.browser.new_page()
            self.page.goto(self.server.url + "index.html")
            self.page.evaluate("window.headstart.ready")
        except BaseException:
            self.close()
            raise

    def __call__(self, image: Path) -> np.ndarray:
        import numpy as np

        data = base64.b64encode(image.read_bytes()).decode()
        probabilities = self.page.evaluate(
            "async (data) => (await headstart.classifyBlob(await (await fetch('data:;base64,' + data)).blob()))"
            ".probabilities",
            data,
        )
        return np.array(probabilities, np.float32)

    def close(self) -> None:
        """End the browser, Playwright and the server."""
        if hasattr(self, "browser"):
            self.browser.close()
        self.playwright.stop()
        self.server.close()


CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-gpu"]


def chromium() -> str | None:
    """Debian's (or any) chromium on PATH: the program `CHROMIUM` requires."""
    return shutil.which("chromium")


def in_chromium(folder: Path, _preprocessing: Preprocessing) -> InChromium:
    """The folder's page in Chromium."""
    return InChromium(folder, chromium() or "chromium")


CHROMIUM = Runtime(
    "onnxruntime-web in Chromium", "Chromium's createImageBitmap", in_chromium, ("playwright",), programs=("chromium",)
)
register_export_format(
    ExportFormat(
        "web", ".web", "Web page", "a folder for any browser: onnxruntime-web (WASM), offline", write_web, run_web,
        input=PIXELS, runtimes=(CHROMIUM,),
    )
)  # fmt: skip
