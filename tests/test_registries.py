"""Each extension point is one registry: a backbone, an export format and a report figure added
through their registries alone show up everywhere users meet them — `headstart backbones`,
`headstart export --help`, training, `headstart.load`, the studio's API, the report."""

import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import headstart
from headstart.backbones import BACKBONES, BackboneSpec, WeightsSource, get_backbone, register_backbone
from headstart.bundle import users_file
from headstart.cli import main
from headstart.errors import HeadstartError
from headstart.evaluation.figure_cache import FigureSpec
from headstart.evaluation.figures import REPORT_FIGURES, ReportFigure, register_figure, report_files
from headstart.evaluation.report import check_report_folder
from headstart.export import EXPORT_FORMATS, ExportFormat, ExportJob, register_export_format
from headstart.fsutil import sha256_file
from headstart.inference.predictor import Predictor
from headstart.inference.runtime import export_onnx, onnx_runner
from headstart.preprocessing import Preprocessing
from headstart.studio.project import Project


class ToyNet(nn.Module):
    """Two convolutions: enough to tell red from green from blue."""

    feature_dim = 8

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, 1, 1), nn.ReLU())

    def blocks(self) -> list[nn.Module]:
        return [self.stem, self.body]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.stem(x)).mean((2, 3))


class ToyExported(Predictor):
    """A `.toy` file read back: its ONNX graph, its labels from the sidecar `export` writes."""

    def __init__(self, path: Path):
        meta = json.loads(Path(f"{path}.json").read_text())
        self.classes, self.preprocessing = meta["labels"], Preprocessing.from_dict(meta["preprocessing"])
        self._run = onnx_runner(path)

    def predict_arrays(self, crops: np.ndarray) -> np.ndarray:
        return self._run(crops)


def write_toy(job: ExportJob) -> None:
    export_onnx(job.net, job.target, job.model.preprocessing.image_size, output_name="probabilities")


def write_toy_folder(job: ExportJob) -> None:
    job.target.mkdir()
    write_toy(ExportJob(job.net, job.target / "m.onnx", job.model, job.format))
    (job.target / "notes.txt").write_text("a folder export\n")


def draw_histogram(probabilities: np.ndarray) -> bytes:
    """A confidence histogram drawn with Pillow (a figure needs no matplotlib)."""
    counts = np.histogram(probabilities.max(1), bins=10, range=(0, 1))[0]
    image = Image.new("RGB", (200, 100), "white")
    for i, n in enumerate(counts):
        image.paste((30, 90, 200), (i * 20 + 2, 100 - int(100 * n / max(1, counts.max())), i * 20 + 18, 100))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def toys(tmp_path_factory):
    """A toy backbone (weights in a file of its own), format and figure, registered for this module."""
    torch.manual_seed(0)
    weights = tmp_path_factory.mktemp("toy-weights") / "toy.pt"
    torch.save(ToyNet().state_dict(), weights)
    backbone = BackboneSpec(
        name="toy_backbone",
        description="two convolutions, for the registry test",
        build=ToyNet,
        weights=WeightsSource(sha256=sha256_file(weights), file=str(weights)),
        preprocessing=Preprocessing(image_size=32, resize_short=36),
        feature_dim=ToyNet.feature_dim,
        num_blocks=2,
        parameters=0.001,
    )
    fmt = ExportFormat("toy", ".toy", "Toy", "onnxruntime", write_toy, onnx_runner, load=ToyExported)
    figure = ReportFigure(
        "toy_histogram",
        "Confidence",
        "histogram of the top probability",
        lambda ev, record: FigureSpec("toy_histogram", [ev.probabilities], lambda: draw_histogram(ev.probabilities)),
    )
    register_backbone(backbone), register_export_format(fmt), register_figure(figure)
    yield backbone, fmt, figure
    BACKBONES.unregister(backbone.name), EXPORT_FORMATS.unregister(fmt.name), REPORT_FIGURES.unregister(figure.name)


@pytest.fixture(scope="module")
def project(toys, tmp_path_factory):
    """A studio project of three colours with a model trained on the toy backbone."""
    root = tmp_path_factory.mktemp("toy-project") / "colours"
    rng = np.random.default_rng(0)
    for name, colour in (("red", (220, 20, 20)), ("green", (20, 200, 20)), ("blue", (20, 20, 220))):
        (root / name).mkdir(parents=True)
        for i in range(10):
            pixels = np.clip(np.array(colour) + rng.normal(0, 25, (48, 64, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    headstart.train(root, backbone="toy_backbone", out=Project(root).new_model_dir(), quiet=True)
    return root


def test_the_cli_lists_the_toy_backbone_and_format(toys, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    assert main(["backbones"]) == 0
    assert "toy_backbone" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "toy" in help_text.split("--format")[1] and "toy (.toy): onnxruntime" in help_text


def test_a_model_on_the_toy_backbone_trains_saves_loads_and_predicts(project):
    (bundle,) = Project(project).models()
    clf = headstart.load(bundle)
    assert clf.spec is get_backbone("toy_backbone") and clf.hparams.backbone == "toy_backbone"
    assert clf.metrics.accuracy == 1.0  # colours: the toy network's mean-pooled features separate them
    blue = sorted((project / "blue").iterdir())[0]
    assert clf.predict(blue)[0].label == "blue"
    meta = json.loads((bundle / "model.json").read_text())
    assert meta["backbone"]["name"] == "toy_backbone" and meta["backbone"]["feature_dim"] == 8


def test_the_toy_format_exports_verified_and_loads_back(project, tmp_path):
    clf = headstart.load(Project(project).models()[0])
    result = clf.export("toy", tmp_path / "colours.toy")
    assert result.verification["top1_agreement"] == 1.0 and result.verification["max_abs_diff"] < 1e-4
    exported = headstart.load(result.path)  # dispatched on the registered suffix
    assert isinstance(exported, ToyExported) and exported.classes == clf.classes
    images = sorted(project.rglob("*.png"))
    assert exported.predict(images).labels == clf.predict(images).labels
    shutil.copy(result.path, tmp_path / "renamed.pt2")  # torch.export's suffix: exported, never loaded back
    with pytest.raises(HeadstartError, match="torch.export export runs in PyTorch.*headstart loads bundles and"):
        headstart.load(tmp_path / "renamed.pt2")


def test_the_report_draws_the_toy_figure_in_its_own_section(project, tmp_path):
    clf = headstart.load(Project(project).models()[0])
    report = clf.report(tmp_path / "report")
    png = (tmp_path / "report" / "toy_histogram.png").read_bytes()
    assert report.files["toy_histogram"] == tmp_path / "report" / "toy_histogram.png"
    assert Image.open(io.BytesIO(png)).size == (200, 100)
    page = report.path.read_text()
    assert "<h2>Confidence</h2>" in page and 'alt="histogram of the top probability"' in page
    assert page.index("<h2>Data</h2>") < page.index("<h2>Confidence</h2>") < page.index("<h2>Configuration</h2>")
    # The figure's file is headstart's: never written over a user's file, never kept as the user's.
    assert "toy_histogram.png" in report_files() and not users_file("toy_histogram.png")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "toy_histogram.png").write_bytes(b"my own picture")
    with pytest.raises(HeadstartError, match="toy_histogram.png: exists and was not written by headstart"):
        check_report_folder(tmp_path / "mine")


def test_the_studio_offers_all_three(project):
    from fastapi.testclient import TestClient

    from headstart.studio.app import create_app

    with TestClient(create_app(project), base_url="http://localhost") as client:
        options = client.get("/api/options").json()
        toy = next(b for b in options["backbones"] if b["name"] == "toy_backbone")
        assert toy["installed"] and toy["num_blocks"] == 2 and toy["image_size"] == 32
        assert {"name": "toy", "title": "Toy", "available": True}.items() <= next(
            f for f in options["export_formats"] if f["name"] == "toy"
        ).items()
        assert {"name": "toy_histogram", "section": "Confidence"}.items() <= options["figures"][-1].items()
        plot = client.get("/api/plots/toy_histogram.png")
        assert plot.status_code == 200 and Image.open(io.BytesIO(plot.content)).size == (200, 100)
        assert client.get("/api/plots/nothing.png").status_code == 404
        exported = client.post("/api/export/toy").json()
        assert exported["file"] == "model.toy" and exported["verification"]["top1_agreement"] == 1.0
        assert (
            client.get("/api/download/model.toy").content[:4]
            == (Project(project).models()[0] / "model.toy").read_bytes()[:4]
        )
        # A format whose export is a folder (as the web page is) downloads as one zip of it.
        run = lambda folder: onnx_runner(folder / "m.onnx")  # noqa: E731
        folder_format = ExportFormat("toyfolder", ".toyfolder", "Toy folder", "onnxruntime", write_toy_folder, run)
        with EXPORT_FORMATS.registered(folder_format):
            assert client.post("/api/export/toyfolder").json()["file"] == "model.toyfolder"
            # Again: the earlier folder is replaced, not written into.
            assert client.post("/api/export/toyfolder").json()["file"] == "model.toyfolder"
            download = client.get("/api/download/model.toyfolder")
            names = zipfile.ZipFile(io.BytesIO(download.content)).namelist()
            assert download.headers["content-type"] == "application/zip"
            assert sorted(names) == ["model.toyfolder/m.onnx", "model.toyfolder/notes.txt"]
        settings = options["settings"]["properties"]
        assert settings["epochs"]["minimum"] == 1 and settings["augment"]["enum"] == ["none", "light", "strong"]
        refused = client.post("/api/train", json={"epochs": 0})
        assert refused.status_code == 422 and "epochs" in refused.text  # the limits HParams declares


def test_registries_refuse_a_taken_name_and_forget_a_removed_one(toys):
    backbone, fmt, figure = toys
    with pytest.raises(HeadstartError, match="a backbone named 'toy_backbone' is already registered"):
        register_backbone(backbone)
    with pytest.raises(HeadstartError, match="'\\+' joins the members"):
        register_backbone(BackboneSpec(**{**backbone.__dict__, "name": "a+b"}))
    with EXPORT_FORMATS.registered(ExportFormat(**{**fmt.__dict__, "name": "toy2", "suffix": ".toy2"})):
        assert "toy2" in EXPORT_FORMATS
    assert "toy2" not in EXPORT_FORMATS
    with pytest.raises(
        HeadstartError, match="unknown export format 'toy2'; choose one of: onnx, onnx-crops, onnx-int8"
    ):
        EXPORT_FORMATS.lookup("toy2")


@pytest.mark.parametrize("first", ["tflite", "torch_export", "onnx"])
def test_the_order_of_formats_does_not_depend_on_which_module_was_imported_first(first):
    # CI once listed tflite first because a doctest imported its module before any lookup.
    script = (
        f"import headstart.export.formats.{first}\n"
        "from headstart.export import EXPORT_FORMATS\n"
        "print(','.join(EXPORT_FORMATS))"
    )
    shown = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    assert shown == "onnx,onnx-crops,onnx-int8,tflite,tflite-int8,torch-export,web"
