"""`headstart studio`: a local web app to build a dataset (webcam, files), train, look at the
mistakes, try the model live and export it. The page is plain HTML/CSS/JS in `static/`.

The server is the same machinery as the CLI: `TrainingRun` (its events streamed to the page as
server-sent events), `Classifier.evaluate` and `export`, and the decode and crop of `serve`.
"""

from __future__ import annotations

import asyncio
import io
import json
import threading
import zipfile
from collections.abc import Collection
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import numpy as np
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from ..errors import HeadstartError
from ..events import EventBus
from ..export import EXPORT_FORMATS
from ..web.errors import ApiError, validation_message
from ..web.hosts import LOOPBACK_NAMES, AllowedHosts
from ..web.schemas import ImagePrediction
from ..web.uploads import MAX_IMAGE_BYTES, prepare_crop
from .options import STUDIO_HPARAMS, TrainSettings, page_options
from .project import Project
from .results import run_result

STATIC = Path(__file__).parent / "static"


class ClassName(BaseModel):
    """A class's name, as the page sends it."""

    name: str = Field(min_length=1, max_length=100)


class Move(BaseModel):
    """Where an image moves: the class it belongs to instead."""

    to: str


class Trainer:
    """One training run at a time, on a thread; its events are kept so any page (or a reloaded
    one) can replay and follow them."""

    def __init__(self, project: Project):
        self.project = project
        self.events: list[dict] = []
        self.thread: threading.Thread | None = None
        self.run = None
        self.bus = None
        self.error: str | None = None

    @property
    def running(self) -> bool:
        """A run is going."""
        return self.thread is not None and self.thread.is_alive()

    def start(self, settings: TrainSettings) -> None:
        """Train on the project with these settings, on a thread; its events are kept for the page."""
        from ..backbones import get_backbone
        from ..hparams import HParams
        from ..training.compare import resolve_backbone
        from ..training.run import TrainingRun

        if self.running:
            raise ApiError(409, "a training run is already going")
        hp = HParams.from_dict(settings.model_dump() | STUDIO_HPARAMS)
        if hp.backbone != "auto":
            get_backbone(hp.backbone)  # an unknown one is refused now, not in the run's first second
        self.events, self.error = [], None
        self.bus = EventBus([self._on_event])  # cancellable from the start, a backbone comparison included
        out = self.project.new_model_dir()

        def build() -> TrainingRun:
            settled = resolve_backbone(self.project.root, hp, self.bus)  # "auto": compare them all first
            return TrainingRun(self.project.root, settled, out=out, on_event=self.bus)

        self.thread = threading.Thread(target=self._train, args=(build,), daemon=True)
        self.thread.start()

    def _on_event(self, event) -> None:
        self.events.append({"type": "event", **event.to_dict()})

    def _train(self, build) -> None:
        try:
            self.run = build()  # on this thread: a comparison of backbones takes a while
            self.run.run()
            self.events.append({"type": "done"} | run_result(self.run.options.out.name, self.run.record))
        except Exception as e:  # shown on the page, in one line, like the CLI
            self.error = str(e) if isinstance(e, HeadstartError) else f"{type(e).__name__}: {e}"
            self.events.append({"type": "failed", "error": self.error})

    def cancel(self) -> None:
        """Stop the run at its next event."""
        if self.running:
            self.bus.cancel()


def review(project: Project, clf, limit: int = 48) -> dict:
    """Out-of-fold predictions of the project's images in the model's classes: the doubtful ones."""
    from ..evaluation.crossval import FOLDS, doubtful, out_of_fold
    from ..evaluation.leakage import group_near_duplicates

    # The project's own listing, not a scan: a class added since training (maybe still empty) is no error here.
    paths = [project.root / c / f for c in clf.classes if (project.root / c).is_dir() for f in project.images(c)]
    extraction = clf.extractor.extract(paths)  # cached when the images were trained on
    paths = [paths[i] for i in extraction.ok]
    labels = np.array([clf.classes.index(p.parent.name) for p in paths])
    groups = group_near_duplicates(extraction.features)
    probabilities = out_of_fold(extraction.features, labels, groups, len(clf.classes))
    if probabilities is None:
        return {"checked": 0, "folds": FOLDS, "images": []}
    images = [
        {
            "class": paths[i].parent.name,
            "file": paths[i].name,
            "predicted": clf.classes[int(probabilities[i].argmax())],
            "confidence": float(probabilities[i].max()),
        }
        for i in doubtful(probabilities, labels)[:limit]
    ]
    return {"checked": len(paths), "folds": FOLDS, "images": images}


def zip_response(files: list[Path], root: Path, name: str) -> Response:
    """`files` as one zip download named `name`, their paths inside it relative to `root`."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as archive:
        for file in files:
            archive.write(file, str(file.relative_to(root)))
    headers = {"content-disposition": f'attachment; filename="{name}"'}
    return Response(buf.getvalue(), media_type="application/zip", headers=headers)


def create_app(project_dir: str | Path, allowed_hosts: Collection[str] = LOOPBACK_NAMES) -> FastAPI:
    """The studio's app on a project folder: its API under /api, the page at /; only requests whose
    Host is one of `allowed_hosts` are answered (`web.hosts`: DNS rebinding)."""
    project = Project(project_dir)
    trainer = Trainer(project)
    cache: dict = {}  # the loaded latest model and its evaluation, by bundle path

    app = FastAPI(title="headstart studio", docs_url=None, redoc_url=None)
    app.add_middleware(AllowedHosts, names=allowed_hosts)

    @app.middleware("http")
    async def same_origin(request: Request, call_next):
        """Another website open in the browser must not drive the studio: requests that change
        anything must come from the studio's own page (or from no page at all, like curl)."""
        origin = request.headers.get("origin")
        if request.method not in ("GET", "HEAD") and origin is not None:
            if urlsplit(origin).netloc != request.headers.get("host"):
                return JSONResponse({"error": f"requests from {origin} are not allowed"}, status_code=403)
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        return JSONResponse({"error": e.message}, status_code=e.status)

    @app.exception_handler(HeadstartError)
    async def user_error(request: Request, e: HeadstartError):
        return JSONResponse({"error": str(e)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):  # a sentence the page shows, not FastAPI's list
        return JSONResponse({"error": validation_message(e.errors())}, status_code=422)

    def latest():
        models = project.models()
        if not models:
            raise ApiError(404, "no trained model yet: train one first")
        path = models[-1]
        if cache.get("path") != path:
            from ..classifier import Classifier

            clf = Classifier.load(path)
            cache.clear()
            cache.update(path=path, clf=clf, evaluation=None)
        return cache["clf"]

    @app.get("/api/options")
    def options() -> dict:
        """What the page offers: backbones, export formats, figures and the training form's fields."""
        return page_options()

    @app.get("/api/project")
    def state() -> dict:
        return {
            "path": str(project.root),
            "classes": [{"name": c, "count": len(project.images(c))} for c in project.classes()],
            "models": [p.name for p in project.models()],
            "training": trainer.running,
        }

    @app.post("/api/classes")
    def add_class(body: ClassName) -> dict:
        project.add_class(body.name)
        return {"ok": True}

    @app.patch("/api/classes/{name}")
    def rename_class(name: str, body: ClassName) -> dict:
        project.rename_class(name, body.name)
        return {"ok": True}

    @app.delete("/api/classes/{name}")
    def delete_class(name: str) -> dict:
        project.delete_class(name)
        return {"ok": True}

    @app.get("/api/classes/{name}/images")
    def list_images(
        name: str, offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=500)] = 60
    ) -> dict:
        names = project.images(name)
        return {"total": len(names), "images": names[offset : offset + limit]}

    @app.post("/api/classes/{name}/images")
    def upload(name: str, files: Annotated[list[UploadFile], File()]) -> dict:
        saved, refused = [], []
        for f in files:
            data = f.file.read(MAX_IMAGE_BYTES + 1)
            name_given = f.filename or "image.jpg"
            if len(data) > MAX_IMAGE_BYTES:
                refused.append({"name": name_given, "error": f"over the {MAX_IMAGE_BYTES >> 20} MB limit"})
                continue
            result = project.add_image(name, name_given, data)
            if result.error:
                refused.append({"name": result.name, "error": result.error})
            else:
                saved.append(result.name)
        return {"saved": saved, "refused": refused}

    @app.get("/api/images/{name}/{file}")
    def image(name: str, file: str, thumb: bool = False) -> Response:
        if thumb:
            return Response(project.thumbnail(name, file), media_type="image/jpeg")
        return FileResponse(project.image_path(name, file))

    @app.delete("/api/images/{name}/{file}")
    def delete_image(name: str, file: str) -> dict:
        project.delete_image(name, file)
        return {"ok": True}

    @app.post("/api/images/{name}/{file}/move")
    def move_image(name: str, file: str, body: Move) -> dict:
        return {"name": project.move_image(name, file, body.to)}

    @app.post("/api/train")
    def train(settings: TrainSettings) -> dict:
        trainer.start(settings)
        return {"ok": True}

    @app.post("/api/train/cancel")
    def cancel() -> dict:
        trainer.cancel()
        return {"ok": True}

    @app.get("/api/train/events")
    async def events(request: Request) -> StreamingResponse:
        """Server-sent events: every event of the current run from the first, then as they come."""

        async def stream():
            sent = 0
            while not await request.is_disconnected():
                while sent < len(trainer.events):
                    yield f"data: {json.dumps(trainer.events[sent], default=str)}\n\n"
                    sent += 1
                if not trainer.running and sent >= len(trainer.events):
                    yield 'data: {"type": "idle"}\n\n'
                    return
                await asyncio.sleep(0.1)

        return StreamingResponse(stream(), media_type="text/event-stream")

    @app.get("/api/train/last")
    def last_result() -> dict:
        """The latest model's run, as the page showed it when it finished: it survives a reload."""
        clf = latest()
        return run_result(cache["path"].name, clf.record)

    @app.get("/api/model")
    def model() -> dict:
        clf = latest()
        if cache["evaluation"] is None:
            cache["evaluation"] = clf.evaluate()
        ev = cache["evaluation"]
        root = project.root
        predicted = ev.probabilities.argmax(1)
        items = [
            {
                "class": p.parent.name,
                "file": p.name,
                "true": ev.classes[int(t)],
                "predicted": ev.classes[int(q)],
                "confidence": float(ev.probabilities[i, q]),
            }
            for i, (p, t, q) in enumerate(zip(ev.paths, ev.labels, predicted))
            if Path(p).parent.parent == root
        ]
        return {
            "name": cache["path"].name,
            "split": ev.split,
            "accuracy": ev.metrics.accuracy,
            "classes": ev.classes,
            "per_class": ev.per_class_rows(),
            "confusion": ev.metrics.confusion,
            "images": items,
            "calibration_error": ev.expected_calibration_error,
        }

    @app.get("/api/doubtful")
    def doubtful_images() -> dict:
        """Every image of the project predicted by a model trained without it (cross-validated on
        the cached features): those predicted as another class, most confident first."""
        clf = latest()
        if "doubtful" not in cache:
            cache["doubtful"] = review(project, clf)
        found = cache["doubtful"]  # minus those fixed since (moved or deleted)
        return found | {"images": [x for x in found["images"] if (project.root / x["class"] / x["file"]).is_file()]}

    @app.get("/api/plots/{name}.png")
    def plot(name: str) -> Response:
        """A report figure of the latest model (any registered one), drawn on its held-out images."""
        from ..evaluation.figure_cache import render
        from ..evaluation.figures import REPORT_FIGURES

        if name not in REPORT_FIGURES:
            raise ApiError(404, f"no figure {name!r}; the report has {', '.join(REPORT_FIGURES)}")
        model()  # the evaluation, computed once per model
        spec = REPORT_FIGURES[name].spec(cache["evaluation"], cache["clf"].record)
        if spec is None:
            raise ApiError(404, f"the {name} figure has nothing to show for this model")
        return Response(render(spec), media_type="image/png")

    @app.post("/api/predict")
    def predict(file: Annotated[UploadFile, File()]) -> ImagePrediction:
        clf = latest()
        data = file.file.read(MAX_IMAGE_BYTES + 1)
        if len(data) > MAX_IMAGE_BYTES:
            raise ApiError(413, f"over the {MAX_IMAGE_BYTES >> 20} MB limit per image")
        crop = prepare_crop(data, file.filename or "image", clf)
        return ImagePrediction.of(file.filename or "image", clf.classes, clf.predict_arrays(crop[None])[0])

    @app.post("/api/export/{fmt}")
    def export(fmt: str) -> dict:
        """Export the latest model in a registered format, into its bundle folder."""
        if fmt not in EXPORT_FORMATS:
            raise ApiError(404, f"unknown export format {fmt!r}")
        clf = latest()
        result = clf.export(fmt, cache["path"] / EXPORT_FORMATS[fmt].default_path(), overwrite=True)
        return {"file": result.path.name, "verification": result.verification, "summary": str(result)}

    @app.get("/api/download/bundle.zip")
    def bundle_zip() -> Response:
        """The bundle folder as one archive: unzip it and `headstart.load` the folder."""
        latest()
        folder = cache["path"]
        return zip_response([folder / "model.json", folder / "model.safetensors"], folder.parent, f"{folder.name}.zip")

    @app.get("/api/download/{file}")
    def download(file: str) -> Response:
        """A file of the latest model's bundle: an export, or the bundle's own files."""
        latest()
        allowed = {str(f.default_path()) for f in EXPORT_FORMATS.values()} | {"model.json", "model.safetensors"}
        path = cache["path"] / file
        if file not in allowed or not (path.is_file() or path.is_dir()):
            raise ApiError(404, f"no {file!r} for this model")
        if path.is_dir():  # a folder export (the web page): one archive of it
            return zip_response(sorted(path.iterdir()), cache["path"], f"{cache['path'].name}-{file}.zip")
        return FileResponse(path, filename=f"{cache['path'].name}-{file}")

    app.mount("/", StaticFiles(directory=STATIC, html=True), name="static")
    return app
