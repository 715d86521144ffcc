"""`headstart serve`: a REST server for a bundle or an exported ONNX file.

Endpoints (documented in /openapi.json):
    GET  /v1/health/live    the process answers
    GET  /v1/health/ready   the model is loaded and warmed up
    GET  /v1/model          labels, preprocessing, backbone, metrics
    POST /v1/predict        multipart images (field `files`), ?top_k=3
    POST /v1/predict/base64 JSON {"images": [{"name": ..., "data": <base64>}], "top_k": 3}
    GET  /metrics           Prometheus text: requests, images, errors, latency, batch sizes
    /v2/...                 the Open Inference Protocol (KServe, Triton): `open_inference.py`

Images go through the same decode and crop as `headstart predict` (`prepare_crop`); requests
share one model session through a greedy batcher. Bad input is a 4xx with a JSON `error`, and
every answer it may get is declared in the OpenAPI document.
"""

# No `from __future__ import annotations`: the upload field's limit (max_images) is a local that
# FastAPI reads from the evaluated annotation.
import base64
import binascii
import hmac
import time
from collections.abc import Collection
from contextlib import asynccontextmanager
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..inference.predictor import Predictor
from ..version import __version__
from ..web.errors import ApiError, validation_message
from ..web.hosts import LOOPBACK_NAMES, AllowedHosts
from ..web.schemas import ImagePrediction
from ..web.uploads import MAX_IMAGE_BYTES
from .batcher import GreedyBatcher
from .open_inference import open_inference_routes
from .served import Metrics, Served, refusals

TOO_LARGE = "headstart.body_too_large"  # set in the ASGI scope when a streamed body passes the limit
MAX_IMAGES = 64  # per request
MAX_BATCH = 8  # per model run: per-image cost is flat beyond this on 2 cores, and memory grows with it
MAX_BODY_BYTES = 128 << 20  # a whole request, counted as it streams in, before any parsing


class Base64Image(BaseModel):
    """One image of a JSON request."""

    name: str = Field("", max_length=1024, description="echoed back, to match answers to images")
    data: str = Field(
        min_length=1,  # an empty file is no image; bad base64 is a 400 naming the field
        description="the image file's bytes, base64-encoded",
        json_schema_extra={"contentEncoding": "base64"},
    )


class Base64Request(BaseModel):
    """`POST /v1/predict/base64`'s body."""

    images: list[Base64Image] = Field(min_length=1, max_length=MAX_IMAGES)  # the server's own limit may be lower
    top_k: int = Field(3, ge=1, le=1000)


class PredictResponse(BaseModel):
    """The answer to a predict request: the model's name and one prediction per image, in order."""

    model: str
    predictions: list[ImagePrediction]


def create_app(
    predictor: Predictor,
    name: str = "model",
    api_key: str | None = None,
    max_images: int = MAX_IMAGES,
    max_image_bytes: int = MAX_IMAGE_BYTES,
    max_body_bytes: int = MAX_BODY_BYTES,
    allowed_hosts: Collection[str] = LOOPBACK_NAMES,
) -> FastAPI:
    """The FastAPI app serving `predictor` (anything `headstart.load` returns): at most
    `max_images` per request of at most `max_image_bytes` each and `max_body_bytes` in all;
    `api_key` guards all but health; only requests whose Host is one of `allowed_hosts` are answered
    (`web.hosts`: DNS rebinding)."""
    metrics = Metrics()
    served = Served(predictor, name, metrics, max_images, max_image_bytes)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        served.batcher = GreedyBatcher(predictor.predict_arrays, MAX_BATCH, metrics.batch.observe)
        size = predictor.preprocessing.image_size
        served.batcher.submit(np.zeros((1, size, size, 3), np.uint8)).result()  # warm up: first run is slow
        served.ready = True
        yield
        served.batcher.close()

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
        return JSONResponse({"error": e.message}, status_code=e.status, headers=e.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        status = 413 if request.scope.get(TOO_LARGE) else e.status_code  # the parser saw our limit as a bad body
        metrics.errors.labels(reason=str(status)).inc()
        body = {"error": str(e.detail) if status != 413 else "request body too large"}
        return JSONResponse(body, status, headers=e.headers)  # a 405's Allow header (RFC 9110) included

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        first = e.errors()[0]
        loc = [str(p) for p in first.get("loc", ())]
        if first.get("type") == "too_long" and loc[-1:] in (["files"], ["images"]):  # the schema's maxItems
            count = len(first.get("input") or ())
            metrics.errors.labels(reason="413").inc()
            return JSONResponse({"error": f"{count} images in one request; the limit is {max_images}"}, 413)
        metrics.errors.labels(reason="422").inc()
        return JSONResponse({"error": validation_message(e.errors())}, status_code=422)

    @app.exception_handler(Exception)
    async def failed(request: Request, e: Exception):  # a bug, not the client's fault: say so, stay up
        metrics.errors.labels(reason="500").inc()
        return JSONResponse({"error": f"internal error ({type(e).__name__})"}, status_code=500)

    app.add_middleware(Observe, metrics=metrics)
    app.add_middleware(BodyLimit, limit=max_body_bytes)
    app.add_middleware(AllowedHosts, names=allowed_hosts)  # added last: it runs first

    # Declared as security schemes (the OpenAPI document says how to authenticate); checked by hand,
    # so that a missing key is our one-line 401 with WWW-Authenticate, not FastAPI's 403.
    key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="the server's --api-key")
    bearer = HTTPBearer(auto_error=False, description="the same key as a bearer token")

    def authorised(key: Annotated[str | None, Depends(key_header)], token: Annotated[object, Depends(bearer)]) -> None:
        given = key or getattr(token, "credentials", None) or ""
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise ApiError(401, "missing or wrong API key (X-API-Key header)", {"WWW-Authenticate": "Bearer"})

    guarded = {"dependencies": [Depends(authorised)]} if api_key is not None else {}
    unauthorised = (401,) if api_key is not None else ()

    def predict(images: list[tuple[str, bytes]], top_k: int) -> PredictResponse:
        rows = served.probabilities(served.crops(images))
        out = [ImagePrediction.of(filename, predictor.classes, row, top_k) for (filename, _), row in zip(images, rows)]
        return PredictResponse(model=name, predictions=out)

    @app.get("/v1/health/live", tags=["health"])
    def live() -> dict:
        return {"status": "live"}

    @app.get("/v1/health/ready", tags=["health"], responses=refusals(503))
    def ready():
        if not served.ready:
            return JSONResponse({"status": "loading"}, status_code=503)
        return {"status": "ready"}

    @app.get("/v1/model", tags=["model"], responses=refusals(*unauthorised), **guarded)
    def model() -> dict:
        return describe(predictor, name)

    predict_refusals = refusals(400, *unauthorised, 413, 422)

    @app.post("/v1/predict", tags=["predict"], responses=predict_refusals, **guarded)
    def predict_files(
        files: Annotated[list[UploadFile], File(description="image files", min_length=1, max_length=max_images)],
        top_k: Annotated[int, Query(ge=1, le=1000)] = 3,
    ) -> PredictResponse:
        served.check_count(len(files))
        images = [(f.filename or "", f.file.read(max_image_bytes + 1)) for f in files]
        return predict(images, top_k)

    @app.post("/v1/predict/base64", tags=["predict"], responses=predict_refusals, **guarded)
    def predict_base64(body: Base64Request) -> PredictResponse:
        served.check_count(len(body.images))
        images = []
        for i, image in enumerate(body.images):
            if len(image.data) > max_image_bytes * 4 // 3 + 4:
                raise ApiError(413, f"images.{i}: over the {max_image_bytes} bytes limit")
            try:
                images.append((image.name, base64.b64decode(image.data, validate=True)))
            except (binascii.Error, ValueError):
                raise ApiError(400, f"images.{i}.data: not valid base64") from None
        return predict(images, body.top_k)

    app.include_router(open_inference_routes(served, guarded, unauthorised))

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
