"""Exports checked from the outside: each file run by runtimes nobody here wrote (onnxruntime in a
process without headstart, OpenVINO, OpenCV's DNN, LiteRT, MediaPipe Tasks), on a real held-out split
(hymenoptera's 153 val photos), each image decoded by that runtime's usual image code, against
`headstart predict`."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import headstart
from headstart.export.formats.onnx import ONNX_RUNTIMES

from .helpers import browser_with_camera, write_y4m

AGREEMENT, TOLERANCE = 0.995, 0.02  # float formats: top-1 agreement and max |Δp| against predict


@pytest.fixture(scope="module")
def model(hymenoptera, tmp_path_factory):
    out = tmp_path_factory.mktemp("deploy") / "model"
    headstart.train(hymenoptera, out=out, quiet=True)
    return headstart.load(out)


@pytest.fixture(scope="module")
def val(hymenoptera) -> list[Path]:
    return sorted((hymenoptera / "val").rglob("*.jpg"))


@pytest.fixture(scope="module")
def expected(model, val) -> np.ndarray:
    """`headstart predict`'s probabilities, in the labels' order."""
    return np.array([[p.probabilities[c] for c in model.classes] for p in model.predict(val)])


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("exports")
    return {fmt: model.export(fmt, folder) for fmt in ("onnx", "onnx-crops", "onnx-int8", "tflite")}


def compare(got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    return float(np.mean(got.argmax(1) == expected.argmax(1))), float(np.abs(got - expected).max())


USER_SCRIPT = """
import json, sys
import numpy as np, onnxruntime
from PIL import Image, ImageOps

session = onnxruntime.InferenceSession(sys.argv[1])
meta = json.loads(session.get_modelmeta().custom_metadata_map["headstart"])
rows = []
for path in sys.argv[2:]:
    pixels = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    rows.append(session.run(None, {"pixels": pixels[None]})[0][0].tolist())
print(json.dumps({"labels": meta["labels"], "rows": rows, "headstart": "headstart" in sys.modules}))
"""


def test_onnx_run_by_onnxruntime_alone_on_pillow_decodes_gives_predicts_answers(exported, val, expected, model):
    """A user's script: the file, onnxruntime and Pillow, no crop code, no headstart in the process."""
    proc = subprocess.run(
        [sys.executable, "-c", USER_SCRIPT, str(exported["onnx"].path), *map(str, val)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    answer = json.loads(proc.stdout)
    assert answer["labels"] == model.classes and answer["headstart"] is False
    agreement, worst = compare(np.array(answer["rows"]), expected)
    assert agreement >= AGREEMENT and worst <= TOLERANCE, (agreement, worst)


@pytest.mark.parametrize("runtime", ONNX_RUNTIMES, ids=lambda r: r.name)
def test_onnx_agrees_in_each_runtime_on_its_own_image_decoding(exported, val, expected, runtime, model):
    assert runtime.available()  # installed by `make test`: never skipped
    run = runtime.run(exported["onnx"].path, model.preprocessing)
    agreement, worst = compare(np.stack([run(p) for p in val]), expected)
    assert agreement >= AGREEMENT and worst <= TOLERANCE, (runtime.name, agreement, worst)
    stored = exported["onnx"].verification["runtimes"][runtime.name]  # what the export measured, in its sidecar
    assert stored["images"] == len(val) and stored["top1_agreement"] >= AGREEMENT


def centre_box(width: int, height: int, meta: dict) -> tuple[float, float, float]:
    """The recipe in an export's metadata, as a user writes it."""
    side = min(width, height) * meta["preprocessing"]["image_size"] / meta["preprocessing"]["resize_short"]
    return (width - side) / 2, (height - side) / 2, side


def recipe_crop(path: Path, meta: dict) -> np.ndarray:
    """A crop made with Pillow as the recipe says."""
    from PIL import Image, ImageOps

    image = ImageOps.exif_transpose(Image.open(path)).convert("RGB")
    left, top, side = centre_box(*image.size, meta)
    size = meta["preprocessing"]["image_size"]
    box = (left, top, left + side, top + side)
    return np.asarray(image.resize((size, size), Image.Resampling.BILINEAR, box=box))


def test_the_crops_export_follows_its_recipe(exported, val, expected, model):
    """The fixed-crop file, fed crops a user makes from the recipe in its metadata, with Pillow."""
    import onnxruntime

    path = exported["onnx-crops"].path
    session = onnxruntime.InferenceSession(str(path))
    meta = json.loads(session.get_modelmeta().custom_metadata_map["headstart"])
    assert "box=(left, top, left + side, top + side)" in meta["input"]["recipe"]
    rows = [session.run(None, {"images": recipe_crop(p, meta)[None]})[0][0] for p in val]
    agreement, worst = compare(np.stack(rows), expected)
    assert agreement >= AGREEMENT and worst <= TOLERANCE, (agreement, worst)


def test_tflite_in_litert_on_recipe_crops_with_the_labels_packed_inside(exported, val, expected, model):
    """LiteRT's interpreter, the labels read from the file itself (MediaPipe packs them as a zip)."""
    import zipfile

    from ai_edge_litert.interpreter import Interpreter

    path = exported["tflite"].path
    with zipfile.ZipFile(path) as packed:
        assert packed.read("labels.txt").decode().split() == model.classes
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    interpreter = Interpreter(model_path=str(path))
    run = interpreter.get_signature_runner()
    rows = [run(images=recipe_crop(p, meta)[None])["probabilities"][0] for p in val]
    agreement, worst = compare(np.stack(rows), expected)
    assert agreement >= AGREEMENT and worst <= TOLERANCE, (agreement, worst)


def test_tflite_in_mediapipe_names_the_classes_on_whole_photos(exported, val, expected, model):
    """MediaPipe Tasks' ImageClassifier decodes each photo itself and resizes the region of interest
    it is given (the recipe's box, moved by half a sample: MediaPipe samples from the region's corner,
    Pillow from pixel centres) itself: bilinear without antialiasing, not Pillow's filter, so it
    answers close to headstart, not equal (README: what a MediaPipe user gets)."""
    from mediapipe import Image
    from mediapipe.tasks.python.components.containers.rect import RectF
    from mediapipe.tasks.python.core.base_options import BaseOptions
    from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions
    from mediapipe.tasks.python.vision.core.image_processing_options import ImageProcessingOptions

    path = exported["tflite"].path
    meta = json.loads(path.with_name(path.name + ".json").read_text())
    options = ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=-1)
    rows = []
    with ImageClassifier.create_from_options(options) as classifier:
        for p in val:
            frame = Image.create_from_file(str(p))
            left, top, side = centre_box(frame.width, frame.height, meta)
            shift = (side / meta["preprocessing"]["image_size"] - 1) / 2
            left, top, w, h = left + shift, top + shift, frame.width, frame.height
            region = RectF(left=left / w, top=top / h, right=(left + side) / w, bottom=(top + side) / h)
            result = classifier.classify(frame, ImageProcessingOptions(region_of_interest=region))
            scores = {c.category_name: c.score for c in result.classifications[0].categories}
            assert set(scores) == set(model.classes)  # the label names travel in the file
            rows.append([scores[c] for c in model.classes])
    agreement, worst = compare(np.array(rows), expected)
    assert agreement >= 0.99, (agreement, worst)  # 99.3% measured (1 of 153), max Δp 0.32
    stored = exported["tflite"].verification["runtimes"]["MediaPipe ImageClassifier"]
    assert stored["images"] == len(val) and abs(stored["top1_agreement"] - agreement) < 0.01


def test_int8_loads_in_every_runtime_with_fp32_probabilities(exported, val):
    """QDQ int8: standard operators (every runtime loads it) and a float head (no 1/256 steps, no ties)."""
    import onnx

    graph = onnx.load(str(exported["onnx-int8"].path)).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}  # no com.microsoft operators
    assert any(n.op_type == "QuantizeLinear" for n in graph.node)
    results = exported["onnx-int8"].verification["runtimes"]
    assert set(results) == {r.name for r in ONNX_RUNTIMES}
    for name, result in results.items():  # measured: 99.3% onnxruntime and OpenCV DNN, 100% OpenVINO
        assert "error" not in result, (name, result)
        assert result["images"] == len(val) and result["ties"] == 0
        assert result["top1_agreement"] >= 0.98, (name, result)


@pytest.fixture(scope="module")
def site(model, tmp_path_factory):
    return model.export("web", tmp_path_factory.mktemp("web") / "site")


@pytest.fixture(scope="module")
def served(site):
    """The folder served as a user would serve it: Python's own static server, on loopback."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(site.path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "index.html", timeout=1).close()
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


def test_a_web_export_given_again_is_that_folder_not_a_folder_to_write_into(site, model):
    from headstart.errors import HeadstartError

    with pytest.raises(HeadstartError, match=f"{site.path}: already exists; pass --force"):
        model.export("web", site.path)


def test_web_export_is_verified_in_chromium(site, val):
    stored = site.verification["runtimes"]["onnxruntime-web in Chromium"]
    assert stored["images"] == len(val)
    assert stored["top1_agreement"] >= AGREEMENT and stored["max_abs_diff"] <= TOLERANCE, stored


def test_web_page_classifies_dropped_photos_and_camera_frames_offline(site, served, val, expected, model, tmp_path):
    """The page as a user meets it, in Chromium with a fake camera: photos chosen in its file input
    are decoded by the browser and agree with `headstart predict`; camera frames are classified with
    the same model (onnxruntime in Python gives the same probabilities on the frame's pixels); every
    request stays on the page's own origin."""
    import onnxruntime
    from playwright.sync_api import sync_playwright

    clip = write_y4m(val[:2], tmp_path / "camera.y4m")
    requests = []
    with sync_playwright() as playwright:
        browser = browser_with_camera(playwright, clip)
        page = browser.new_page(viewport={"width": 1000, "height": 900})
        page.on("request", lambda request: requests.append(request.url))
        page.goto(served + "index.html")
        page.wait_for_function("document.getElementById('status').textContent.startsWith('Ready')")
        assert page.title() == f"{', '.join(model.classes)}: image classifier"

        page.locator("#files").set_input_files([str(p) for p in val])
        page.wait_for_function(f"window.headstart.files.length === {len(val)}", timeout=120_000)
        files = page.evaluate("window.headstart.files")
        assert [f["name"] for f in files] == [p.name for p in val]
        agreement, worst = compare(np.array([f["probabilities"] for f in files]), expected)
        assert agreement >= AGREEMENT and worst <= TOLERANCE, (agreement, worst)
        assert page.locator("#results tbody tr").count() == len(val)
        assert page.locator("#label").text_content() == f"{files[-1]['label']} ({max(files[-1]['probabilities']):.1%})"
        shoot(page, tmp_path, "files")

        page.get_by_role("button", name="Start camera").click()
        page.wait_for_function("window.headstart.lastFrame !== null", timeout=60_000)
        frame = page.evaluate(
            "(() => { const f = window.headstart.lastFrame; "
            "return {width: f.width, height: f.height, rgb: Array.from(f.rgb), probabilities: f.probabilities}; })()"
        )
        shoot(page, tmp_path, "camera")
        browser.close()
    pixels = np.array(frame["rgb"], np.uint8).reshape(1, frame["height"], frame["width"], 3)
    session = onnxruntime.InferenceSession(str(site.path / "model.onnx"))
    np.testing.assert_allclose(frame["probabilities"], session.run(None, {"pixels": pixels})[0][0], atol=1e-4)
    elsewhere = [url for url in requests if not url.removeprefix("blob:").startswith(served)]
    assert requests and not elsewhere, elsewhere


def shoot(page, tmp_path: Path, name: str) -> None:
    folder = Path(os.environ.get("HEADSTART_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"web-export-{name}.png"), full_page=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_web_export_that_cannot_be_checked_in_the_browser_is_not_written(model, tmp_path, monkeypatch):
    from headstart.errors import HeadstartError
    from headstart.export.formats import web

    monkeypatch.setattr(web, "chromium", lambda: str(tmp_path / "no-such-chromium"))
    with pytest.raises(HeadstartError, match=r"web export can't be checked in onnxruntime-web in Chromium \(.+\)"):
        model.export("web", tmp_path / "site")
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind
