"""`headstart serve`: a REST server for a bundle or an exported ONNX file.

Endpoints (documented in /openapi.json):
    GET  /v1/health/live    the process answers
    GET  /v1/health/ready   the model is loaded and warmed up
    GET  /v1/model          labels, preprocessing, backbone, metrics
    POST /v1/predict        multipart images (field `files`), ?top_k=3
    POST /v1/predict/base64 JSON {"images": [{"name": ..., "data": <base64>}], "top_k": 3}
    GET  /metrics           Prometheus text: requests, images, errors, latency, batch sizes

Images go through the same decode and crop as `headstart predict` (`prepare_crop`); requests
share one model session through a greedy batcher. Bad input is a 4xx with a JSON `error`.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import threading
import time
from contextlib import asynccontextmanager
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..display import printable
from ..inference.predictor import Predictor
from ..version import __version__
from ..web.errors import ApiError
from ..web.schemas import ImagePrediction
from ..web.uploads import MAX_IMAGE_BYTES, prepare_crop
from .batcher import GreedyBatcher

TOO_LARGE = "headstart.body_too_large"  # set in the ASGI scope when a streamed body passes the limit
MAX_IMAGES = 64  # per request
MAX_BATCH = 8  # per model run: per-image cost is flat beyond this on 2 cores, and memory grows with it
MAX_BODY_BYTES = 128 << 20  # a whole request, counted as it streams in, before any parsing


class Base64Image(BaseModel):
    """One image of a JSON request."""

    name: str = Field("", max_length=1024, description="echoed back, to match answers to images")
    data: str = Field(description="the image file's bytes, base64-encoded")


class Base64Request(BaseModel):
    """`POST /v1/predict/base64`'s body."""

    images: list[Base64Image] = Field(min_length=1)
    top_k: int = Field(3, ge=1, le=1000)


class PredictResponse(BaseModel):
    """The answer to a predict request: the model's name and one prediction per image, in order."""

    model: str
    predictions: list[ImagePrediction]


class Metrics:
    """The server's Prometheus metrics, in a registry of its own (several apps per process in tests)."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("headstart_requests", "HTTP requests", ["path", "status"], registry=self.registry)
        self.images = Counter("headstart_images", "Images predicted", registry=self.registry)
        self.errors = Counter("headstart_errors", "Requests refused or failed", ["reason"], registry=self.registry)
        self.latency = Histogram(
            "headstart_request_latency_seconds",
            "Request latency",
            ["path"],
            buckets=(0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.batch = Histogram(
            "headstart_batch_size", "Images per model run", buckets=(1, 2, 3, 4, 6, 8), registry=self.registry
        )


def create_app(
    predictor: Predictor,
    name: str = "model",
    api_key: str | None = None,
    max_images: int = MAX_IMAGES,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    max_body_bytes: int = MAX_BODY_BYTES,
) -> FastAPI:
    """The FastAPI app serving `predictor` (anything `headstart.load` returns): at most
    `max_images` per request of at most `max_image_bytes` each and `max_body_bytes` in all;
    `api_key` guards all but health."""
    metrics = Metrics()
    state: dict = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        state["batcher"] = GreedyBatcher(predictor.predict_arrays, MAX_BATCH, metrics.batch.observe)
        size = predictor.preprocessing.image_size
        state["batcher"].submit(np.zeros((1, size, size, 3), np.uint8)).result()  # warm up: first run is slow
        state["ready"] = True
        yield
        state["batcher"].close()

    app = FastAPI(
        title="headstart serve",
        version=__version__,
        description=f"Image classification with {name}: {', '.join(predictor.classes)}",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load from a CDN: /openapi.json is the offline documentation
        redoc_url=None,
    )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        metrics.errors.labels(reason=str(e.status)).inc()
        return JSONResponse({"error": e.message}, status_code=e.status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        status = 413 if request.scope.get(TOO_LARGE) else e.status_code  # the parser saw our limit as a bad body
        metrics.errors.labels(reason=str(status)).inc()
        return JSONResponse({"error": str(e.detail) if status != 413 else "request body too large"}, status)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        metrics.errors.labels(reason="422").inc()
        return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid')}"}, status_code=422)

    @app.exception_handler(Exception)
    async def failed(request: Request, e: Exception):  # a bug, not the client's fault: say so, stay up
        metrics.errors.labels(reason="500").inc()
        return JSONResponse({"error": f"internal error ({type(e).__name__})"}, status_code=500)

    app.add_middleware(Observe, metrics=metrics)
    app.add_middleware(BodyLimit, limit=max_body_bytes)

    def authorised(request: Request) -> None:
        if api_key is None:
            return
        given = request.headers.get("x-api-key") or request.headers.get("authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key (X-API-Key header)")

    def check_count(n: int) -> None:
        if n > max_images:
            raise ApiError(413, f"{n} images in one request; the limit is {max_images}")

    decoding = threading.BoundedSemaphore(2 * (os.cpu_count() or 1))  # bounds memory, however many clients

    def predict(images: list[tuple[str, bytes]], top_k: int) -> PredictResponse:
        with decoding:
            crops = np.stack([prepare_crop(data, filename, predictor) for filename, data in images])
        rows = state["batcher"].submit(crops).result()
        metrics.images.inc(len(images))
        out = [ImagePrediction.of(filename, predictor.classes, row, top_k) for (filename, _), row in zip(images, rows)]
        return PredictResponse(model=name, predictions=out)

    @app.get("/v1/health/live", tags=["health"])
    def live() -> dict:
        return {"status": "live"}

    @app.get("/v1/health/ready", tags=["health"])
    def ready():
        if not state["ready"]:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready"}

    @app.get("/v1/model", tags=["model"], dependencies=[Depends(authorised)])
    def model() -> dict:
        return describe(predictor, name)

    @app.post("/v1/predict", tags=["predict"], dependencies=[Depends(authorised)])
    def predict_files(
        files: Annotated[list[UploadFile], File(description="image files")],
        top_k: Annotated[int, Query(ge=1, le=1000)] = 3,
    ) -> PredictResponse:
        check_count(len(files))
        images = []
        for f in files:
            data = f.file.read(max_image_bytes + 1)
            if len(data) > max_image_bytes:
                raise ApiError(413, f"{printable(f.filename or 'image')}: over the {max_image_bytes} bytes limit")
            images.append((f.filename or "", data))
        return predict(images, top_k)

    @app.post("/v1/predict/base64", tags=["predict"], dependencies=[Depends(authorised)])
    def predict_base64(body: Base64Request) -> PredictResponse:
        check_count(len(body.images))
        images = []
        for i, image in enumerate(body.images):
            if len(image.data) > max_image_bytes * 4 // 3 + 4:
                raise ApiError(413, f"images.{i}: over the {max_image_bytes} bytes limit")
            try:
                images.append((image.name, base64.b64decode(image.data, validate=True)))
            except (binascii.Error, ValueError):
                raise ApiError(400, f"images.{i}.data: not valid base64") from None
        return predict(images, body.top_k)

    @app.get("/metrics", tags=["health"], include_in_schema=False)
    def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


class Observe:
    """Count requests and time them per route (plain ASGI: BaseHTTPMiddleware costs ~1 ms a request)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, status = time.perf_counter(), 500

        async def record(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            route = scope.get("route")
            path = route.path if route is not None else "other"
            self.metrics.requests.labels(path=path, status=str(status)).inc()
            self.metrics.latency.labels(path=path).observe(time.perf_counter() - start)


class BodyLimit:
    """Refuse a request body over `limit` bytes while it streams in (chunked bodies included),
    before any of it is parsed or spooled."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit() or int(length) > self.limit:  # known up front: refuse without reading
            response = JSONResponse({"error": self.message}, status_code=413)
            return await response(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:  # a chunked body that keeps coming
                scope[TOO_LARGE] = True
                raise ApiError(413, self.message)
            return message

        await self.app(scope, limited, send)

    @property
    def message(self) -> str:
        """What a client sent too much is told."""
        return f"request body over the {self.limit} bytes limit"


def describe(predictor: Predictor, name: str) -> dict:
    """What a client needs to know about the model: labels, preprocessing, backbone, metrics."""
    out = {"name": name, "labels": predictor.classes, "preprocessing": predictor.preprocessing.to_dict()}
    if (spec := getattr(predictor, "spec", None)) is not None:
        out["backbone"] = spec.name
        out["test_time_augmentation"] = getattr(predictor, "tta", "none")
    if (record := getattr(predictor, "record", None)) is not None and record.metrics is not None:
        out["metrics"] = {"split": record.evaluated_on, **record.metrics.to_dict()}
    return out
