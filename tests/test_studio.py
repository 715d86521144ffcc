"""headstart studio end to end in a real browser (Playwright driving Debian's chromium, headless),
with fake webcams playing clips made here from hymenoptera photos; plus the project's API rules.

Screenshots go to $HEADSTART_SCREENSHOTS when set (the README's come from `make screenshots`).
"""

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

import headstart
from headstart.studio.project import Project

from .helpers import browser_with_camera, write_y4m
from .test_leakage import burst


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def studio_server(project: Path):
    """`headstart studio PROJECT` on a free loopback port: its URL."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "headstart", "studio", str(project), "--port", str(port), "--no-browser"],
        stderr=subprocess.PIPE,
        text=True,
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            httpx.get(url + "api/project", timeout=1)
            break
        except httpx.TransportError:
            time.sleep(0.2)
    yield url
    proc.terminate()
    proc.wait(timeout=30)
    assert "Traceback" not in proc.stderr.read()


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    project = tmp_path_factory.mktemp("studio") / "insects"
    with studio_server(project) as url:
        yield url, project


def shoot(page, name: str, full_page: bool = True) -> None:
    if folder := os.environ.get("HEADSTART_SCREENSHOTS"):
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"studio-{name}.png"), full_page=full_page)


def record(page, cls: str, files: list[Path], keyboard: bool = False) -> None:
    hold(page, cls, keyboard)
    page.locator("#files").set_input_files([str(p) for p in files])
    page.wait_for_function(f"document.getElementById('message').textContent.includes('added to “{cls}”')")


def hold(page, cls: str, keyboard: bool = False) -> None:
    """Pick `cls`, start the camera and hold the record button for 2.2 s (about eleven frames)."""
    page.get_by_role("button", name=cls, exact=True).click()
    page.get_by_role("button", name="Start camera").click()
    page.wait_for_function("document.getElementById('video').videoWidth > 0")
    button = page.get_by_role("button", name="Hold to record")
    if keyboard:  # Space held on the focused button records too
        button.focus()
        page.keyboard.down(" ")
        page.wait_for_timeout(2200)  # five frames a second
        page.keyboard.up(" ")
    else:
        button.hover()
        page.mouse.down()
        page.wait_for_timeout(2200)
        page.mouse.up()
    page.wait_for_function(f"document.getElementById('message').textContent.includes('saved to “{cls}”')")


def test_studio_end_to_end_in_chromium(studio, hymenoptera, tmp_path):
    from playwright.sync_api import sync_playwright

    url, project = studio
    photos = {c: sorted((hymenoptera / "train" / c).glob("*.jpg")) for c in ("ants", "bees")}
    clips = {c: write_y4m(photos[c][:8], tmp_path / f"{c}.y4m") for c in photos}
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8 not a photo")
    with sync_playwright() as pw:
        # Ants: make both classes, record from the fake camera, add files (and one bad file).
        browser = browser_with_camera(pw, clips["ants"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        for cls in ("ants", "bees"):  # by keyboard: type the name, press Enter
            page.get_by_label("New class").fill(cls)
            page.get_by_label("New class").press("Enter")
            page.wait_for_selector(f"#classes button.pick:text-is('{cls}')")
        mislabelled = photos["bees"][20:23]  # bees filed as ants: the studio must point them out
        record(page, "ants", photos["ants"][8:20] + mislabelled + [bad])
        assert "not a recognised image format" in page.locator("#refused").inner_text()
        shoot(page, "1-data")
        browser.close()

        # Bees, in a browser whose camera plays bees.
        browser = browser_with_camera(pw, clips["bees"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url)
        record(page, "bees", photos["bees"][8:20], keyboard=True)
        counts = {c.name: len(Project(project).images(c.name)) for c in (project / "ants", project / "bees")}
        assert counts["ants"] >= 12 + 8 and counts["bees"] >= 12 + 8  # files plus webcam frames, on disk

        # Train, with progress streamed live.
        page.get_by_role("tab", name="2 · Train").click()
        page.get_by_label("Epochs").fill("30")
        page.get_by_role("button", name="Train", exact=True).click()
        page.wait_for_function("document.getElementById('progress').textContent.length > 0")
        page.wait_for_selector("text=Done: accuracy", timeout=240_000)
        assert page.evaluate("document.getElementById('curves').toDataURL().length") > 5000  # curves drawn
        shoot(page, "2-train")

        # Look: the confusion matrix, a cell's images, the mistakes.
        page.get_by_role("button", name="Look at the mistakes").click()
        page.wait_for_selector("#confusion-table")
        page.locator("#confusion-table td.cell button").first.click()
        page.wait_for_selector("#cell-images img")
        page.wait_for_function("document.getElementById('plot-calibration').naturalWidth > 0")
        # Every image predicted out of fold: the bees filed as ants are among the doubtful ones.
        page.wait_for_selector("#mistakes .thumb")
        shown = page.locator("#mistakes .thumb .name").all_inner_texts()
        name = next(n for n in shown if n in {p.name for p in mislabelled})
        mistake = page.locator("#mistakes .thumb").filter(has=page.locator(f".name:text-is('{name}')"))
        assert "looks like bees" in mistake.inner_text()
        with page.expect_popup() as popup:  # open it full size
            mistake.locator("a").click()
        assert popup.value.evaluate("document.images[0].naturalWidth") > 100
        popup.value.close()
        shoot(page, "3-look")
        mistake.get_by_label(f"move {name} to another class").select_option("bees")  # and fix its label
        page.wait_for_function(
            f"![...document.querySelectorAll('#mistakes .thumb .name')].some((e) => e.textContent === {name!r})"
        )
        assert (project / "bees" / name).is_file() and not (project / "ants" / name).exists()
        counts["ants"], counts["bees"] = counts["ants"] - 1, counts["bees"] + 1
        browser.close()

        # Try: live prediction from an ants camera.
        browser = browser_with_camera(pw, clips["ants"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(url + "#try")
        page.get_by_role("button", name="Start live prediction").click()
        page.wait_for_function("document.getElementById('try-label').textContent === 'ants'", timeout=30_000)
        page.wait_for_timeout(1000)
        assert page.locator("#try-label").inner_text() == "ants"
        shoot(page, "4-try")
        page.get_by_role("button", name="Stop").click()

        # Export ONNX and download it; the file is a model headstart can load.
        page.get_by_role("tab", name="5 · Export").click()
        page.get_by_role("button", name="Export ONNX", exact=True).click()
        with page.expect_download(timeout=120_000) as download:
            page.get_by_role("link", name="Download model.onnx").click()
        onnx = tmp_path / "downloaded.onnx"
        download.value.save_as(onnx)
        exported = headstart.load(onnx)
        assert exported.classes == ["ants", "bees"] and exported.takes_pixels  # whole images in, the crop inside
        assert "agreement" in page.locator("#exports").inner_text()
        assert "on whole images: onnxruntime 100.0%, OpenVINO (f32) 100.0%" in page.locator("#exports").inner_text()
        with page.expect_download() as download:
            page.get_by_role("link", name="Download the bundle (.zip)").click()
        download.value.save_as(tmp_path / "bundle.zip")
        shutil.unpack_archive(tmp_path / "bundle.zip", tmp_path / "unzipped")
        (folder,) = (tmp_path / "unzipped").iterdir()
        assert headstart.load(folder).classes == ["ants", "bees"]
        shoot(page, "5-export")

        # Reload: everything is still there (it lives on disk).
        page.goto(url)
        page.wait_for_selector("#classes button.pick:text-is('bees')")
        listed = page.locator("#classes .count").all_inner_texts()
        assert [int(n) for n in listed] == [counts["ants"], counts["bees"]]
        page.set_viewport_size({"width": 390, "height": 844})  # a phone-width window
        page.get_by_role("button", name="ants", exact=True).click()
        page.wait_for_selector("#thumbs img")
        shoot(page, "6-phone", full_page=False)
        browser.close()
    assert len(Project(project).models()) == 1  # and `headstart train PROJECT` sees the same data
    assert headstart.load(Project(project).models()[0]).classes == ["ants", "bees"]


def clip_of_a_hold(photos: list[Path], path: Path, rng) -> tuple[Path, list[Image.Image]]:
    """A fake camera's clip of one hold: each photo for eight frames, shaken a little, with sensor noise."""
    frames = [frame for photo in photos for frame in burst(Image.open(photo), rng, 8)]
    stills = []
    for i, frame in enumerate(frames):
        stills.append(path.with_name(f"{path.stem}-{i}.png"))
        frame.save(stills[-1])
    return write_y4m(stills, path, repeat=1), frames


def test_webcam_holds_are_held_out_whole_and_the_accuracy_holds_on_a_clip_recorded_later(hymenoptera, alpaca, tmp_path):
    """Five holds per class, each of three scenes. A random split put frames of one hold in train and
    test: the leakage warning fired and the accuracy was the next frame's. Split by hold, the warning
    stays quiet and the accuracy shown is the one a clip recorded after training gets."""
    from playwright.sync_api import sync_playwright

    rng = np.random.default_rng(0)
    photos = {
        "alpaca": sorted((alpaca / "alpaca").glob("*.jpg")),
        "bees": sorted((hymenoptera / "train" / "bees").glob("*.jpg")),
    }
    project = tmp_path / "webcam"
    with studio_server(project) as url, sync_playwright() as pw:
        for cls in photos:
            httpx.post(url + "api/classes", json={"name": cls}).raise_for_status()
        for session in range(5):
            for cls, files in photos.items():
                clip, _ = clip_of_a_hold(files[3 * session : 3 * session + 3], tmp_path / f"{cls}{session}.y4m", rng)
                browser = browser_with_camera(pw, clip)
                page = browser.new_page(viewport={"width": 1366, "height": 768})
                page.goto(url)
                hold(page, cls)
                browser.close()
        sessions = {p.name.split("-")[1] for p in project.glob("*/webcam-*.jpg")}
        assert len(sessions) == 10  # one name per hold, shared by its frames

        browser = browser_with_camera(pw, clip)
        page = browser.new_page(viewport={"width": 1366, "height": 768})
        page.goto(url + "#train")
        page.get_by_role("button", name="Train", exact=True).click()
        page.wait_for_selector("text=Done: accuracy", timeout=240_000)
        result = page.locator("#train-result")
        assert result.locator(".warn").count() == 0, result.inner_text()  # no leakage: no near-copy across splits
        last = httpx.get(url + "api/train/last").json()
        assert last["split"] == "test" and last["leakage"] is None and last["total"] >= 20
        assert f"{last['correct']} of {last['total']} held-out test images right" in result.inner_text()
        low, high = last["interval"]
        assert low <= last["accuracy"] <= high and "95% interval" in result.inner_text()

        # A clip recorded after training, of scenes it never saw, through the Try path.
        right = total = 0
        for cls, files in photos.items():
            _, frames = clip_of_a_hold(files[40:49], tmp_path / f"later-{cls}.y4m", rng)
            for i, frame in enumerate(frames):
                buf = io.BytesIO()
                frame.save(buf, "JPEG", quality=92)
                answer = httpx.post(url + "api/predict", files={"file": (f"{i}.jpg", buf.getvalue())}, timeout=60)
                right, total = right + (answer.json()["label"] == cls), total + 1
        assert abs(last["accuracy"] - right / total) <= 0.05, (last, right / total)

        page.reload()  # the last result survives a reload
        page.wait_for_selector("#headline:has-text('Last model')")
        assert f"{last['correct']} of {last['total']}" in page.locator("#headline").inner_text()
        assert page.evaluate("document.getElementById('curves').toDataURL().length") > 5000
        browser.close()


def test_the_studio_answers_only_to_its_own_names(studio):
    """`headstart studio` bound to loopback refuses a rebinding page's Host before the request does
    anything (a class delete removes its photos from disk)."""
    url, project = studio  # sent to 127.0.0.1; evil.example (RFC 2606, never resolves) is only the Host header
    (project / "kept").mkdir(exist_ok=True)
    rebound = httpx.delete(url + "api/classes/kept", headers={"host": "evil.example", "origin": "http://evil.example"})
    assert rebound.status_code == 400 and "evil.example" in rebound.json()["error"] and (project / "kept").is_dir()
    assert httpx.delete(url + "api/classes/kept").status_code == 200 and not (project / "kept").exists()


def test_project_keeps_requests_inside_the_folder(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(headstart.HeadstartError, match="not a folder"):
        Project(tmp_path / "a-file")
    p = Project(tmp_path / "proj")
    p.add_class("cats")
    for bad in ("../x", ".hidden", "a/b", "", " cats"):
        with pytest.raises(headstart.HeadstartError):
            p.add_class(bad)
    with pytest.raises(headstart.HeadstartError):
        p.image_path("cats", "../../etc/passwd")
    pixels = np.zeros((40, 40, 3), np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    saved = p.add_image("cats", "../../evil name.png", buf.getvalue())
    assert saved.error is None and (tmp_path / "proj" / "cats" / saved.name).is_file() and "/" not in saved.name
    assert p.add_image("cats", "x.jpg", b"junk").error == "not a recognised image format"
    hidden = p.add_image("cats", ".hidden.png", buf.getvalue())  # a leading dot would hide it from training
    assert hidden.error is None and not hidden.name.startswith(".") and hidden.name in p.images("cats")
    (tmp_path / "proj" / "cats" / ".DS_Store.jpg").write_bytes(buf.getvalue())
    assert ".DS_Store.jpg" not in p.images("cats")
    with pytest.raises(headstart.HeadstartError, match="too long a class name"):
        p.add_class("🐝" * 100)  # 100 characters, 400 bytes: more than a folder name can hold
    with pytest.raises(headstart.HeadstartError, match="spaces alone are not a name"):
        p.add_class("   ")
    p.delete_image("cats", hidden.name)
    p.add_class("dogs")
    moved = p.move_image("cats", saved.name, "dogs")
    assert p.images("dogs") == [moved] and p.images("cats") == []
    p.rename_class("dogs", "hounds")
    assert p.classes() == ["cats", "hounds"]


def test_studio_predicts_what_headstart_predict_does(small_hymenoptera, tmp_path):
    """The live "Try" path uses the same decode, crop and model as `headstart predict`."""
    from fastapi.testclient import TestClient

    from headstart.studio.app import create_app

    project = tmp_path / "p"
    shutil.copytree(small_hymenoptera / "train", project)
    model_dir = Project(project).new_model_dir()
    headstart.train(project, out=model_dir, hidden=(8,))
    images = sorted(project.rglob("*.jpg"))[:6]
    expected = headstart.load(model_dir).predict(images)
    with TestClient(create_app(project), base_url="http://localhost") as client:
        for path, e in zip(images, expected):
            got = client.post("/api/predict", files={"file": (path.name, path.read_bytes())}).json()
            assert got["label"] == e.label
            assert all(abs(got["probabilities"][c] - p) <= 1e-6 for c, p in e.probabilities.items())
        assert client.post("/api/predict", files={"file": ("x.jpg", b"junk")}).status_code == 422
        assert client.get("/api/images/ants/..%2F..%2Fetc%2Fpasswd").status_code in (400, 404)
        assert client.post("/api/classes", json={"name": "../escape"}).status_code == 400
        evil = client.post("/api/classes", json={"name": "x"}, headers={"origin": "http://127.0.0.1:1"})
        assert evil.status_code == 403 and not (project / "x").exists()
        # DNS rebinding: same origin as far as the browser knows, but the Host is not the studio's.
        rebound = {"origin": "http://evil.example", "host": "evil.example"}
        refused = client.post("/api/classes", json={"name": "x"}, headers=rebound)
        assert refused.status_code == 400 and "evil.example" in refused.json()["error"] and not (project / "x").exists()
        assert client.delete("/api/classes/ants", headers=rebound).status_code == 400 and (project / "ants").is_dir()
        # Names the API refuses are refused in a sentence, never a 500 or FastAPI's raw list.
        for name, status, words in [
            ("🐝" * 100, 400, "too long a class name"),
            ("   ", 400, "spaces alone are not a name"),
            ("", 422, "name: string should have at least 1 character"),
        ]:
            answer = client.post("/api/classes", json={"name": name})
            assert answer.status_code == status and words in answer.json()["error"], answer.text
