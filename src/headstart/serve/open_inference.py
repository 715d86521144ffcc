"""The Open Inference Protocol v2 (KServe, Triton's HTTP API), beside `/v1`: what `tritonclient`,
KServe and Triton's tools call.

    GET  /v2                               server metadata: name, version, extensions
    GET  /v2/health/live, /v2/health/ready
    GET  /v2/models/{model}                model metadata: its inputs and outputs
    GET  /v2/models/{model}/ready
    GET  /v2/models/{model}/config         Triton's model configuration extension
    POST /v2/models/{model}/infer          JSON tensors, or Triton's binary tensor data extension
    (and each model route under /v2/models/{model}/versions/1/...)

The model takes one of two inputs:
    image_bytes  BYTES [N]            encoded image files, decoded and cropped as `headstart predict`
                                      does, so the probabilities are predict's; in JSON, base64 strings
    images       UINT8 [N, S, S, 3]   RGB crops already made, as the ONNX export takes them
and answers with `probabilities` (FP32 [N, classes], in `labels` order) and `label` (BYTES [N]).
Errors are `{"error": ...}`, as the protocol says (and as `/v1` answers).
"""

# No `from __future__ import annotations`: the path parameters' schema (the served model's name) is
# a local that FastAPI reads from the evaluated annotation.
import base64
import binascii
import json
import struct
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import APIRouter, Depends, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError

from ..version import __version__
from ..web.errors import ApiError
from .served import Served, refusals

VERSION = "1"  # a served model has one version
EXTENSIONS = ["binary_tensor_data", "model_configuration"]
HEADER_LENGTH = "Inference-Header-Content-Length"  # the binary extension: the JSON part's length
ENCODED, CROPS, PROBABILITIES, LABEL = "image_bytes", "images", "probabilities", "label"


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    """`GET /v2/models/{model}`: the protocol's model metadata."""

    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class RequestInput(BaseModel):
    name: Literal["image_bytes", "images"] = Field(description="encoded image files, or uint8 crops")
    shape: list[Annotated[int, Field(ge=1)]] = Field(min_length=1, max_length=4)
    datatype: Literal["BYTES", "UINT8"]
    parameters: dict[str, Any] = Field(default_factory=dict)
    data: list[Any] | None = Field(None, description="row-major, flat or nested; absent with binary_data_size")


class RequestOutput(BaseModel):
    name: Literal["probabilities", "label"]
    parameters: dict[str, Any] = Field(default_factory=dict)


class InferRequest(BaseModel):
    """`POST /v2/models/{model}/infer`'s JSON (the part before the binary tensors, if any)."""

    id: str | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: list[RequestInput] = Field(min_length=1, max_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, Any] | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


def open_inference_routes(served: Served, guarded: dict, unauthorised: tuple[int, ...]) -> APIRouter:
    """The `/v2` routes for `served` (`guarded`: the API-key dependency when the server has a key,
    `unauthorised`: (401,) then)."""
    router = APIRouter(prefix="/v2", tags=["open inference protocol v2"])
    size = served.predictor.preprocessing.image_size
    classes = served.predictor.classes

    def model_of(model: str, version: str = VERSION) -> None:
        if model != served.name or version != VERSION:
            raise ApiError(404, f"no model {model!r} version {version!r}; this server serves {served.name!r}")

    def model_ready() -> dict:
        return {"name": served.name, "ready": served.ready}

    def model_metadata() -> ModelMetadata:
        return ModelMetadata(
            name=served.name,
            versions=[VERSION],
            platform="headstart",
            inputs=[
                TensorMetadata(name=ENCODED, datatype="BYTES", shape=[-1]),
                TensorMetadata(name=CROPS, datatype="UINT8", shape=[-1, size, size, 3]),
            ],
            outputs=[
                TensorMetadata(name=PROBABILITIES, datatype="FP32", shape=[-1, len(classes)]),
                TensorMetadata(name=LABEL, datatype="BYTES", shape=[-1]),
            ],
        )

    @router.get("")
    def server_metadata() -> dict:
        return {"name": "headstart", "version": __version__, "extensions": EXTENSIONS}

    @router.get("/health/live")
    def live() -> dict:
        return {"live": True}

    @router.get("/health/ready", responses=refusals(503))
    def ready():
        return JSONResponse({"ready": served.ready}, status_code=200 if served.ready else 503)

    def tensors(ts: list[TensorMetadata]) -> list[dict]:  # as Triton's model configuration lists them
        return [{"name": t.name, "data_type": f"TYPE_{t.datatype}", "dims": t.shape} for t in ts]

    def model_config() -> dict:
        meta = model_metadata()
        return {
            "name": served.name,
            "platform": "headstart",
            "max_batch_size": 0,  # the batch is the inputs' first dimension, as the metadata says
            "input": tensors(meta.inputs),
            "output": tensors(meta.outputs),
            "parameters": {"labels": {"string_value": json.dumps(classes)}},
        }

    async def infer(request: Request) -> InferResponse:
        header, binary = split_body(await request.body(), request.headers.get(HEADER_LENGTH))
        crops = await run_in_threadpool(crops_of, header.inputs[0], binary, served, size)
        rows = await run_in_threadpool(served.probabilities, crops)
        return answer(header, rows, classes, served.name)

    Model = Annotated[str, Path(description="the served model", json_schema_extra={"enum": [served.name]})]
    Version = Annotated[str, Path(description="its one version", json_schema_extra={"enum": [VERSION]})]

    def this_model(model: Model) -> None:
        model_of(model)

    def this_version(model: Model, version: Version) -> None:
        model_of(model, version)

    infer_answers = {200: {"content": {"application/octet-stream": {}}}} | refusals(400, *unauthorised, 404, 413, 422)
    infer_body = {"requestBody": {"required": True, "content": {"application/json": {"schema": inlined(InferRequest)}}}}
    routes = [
        ("", model_metadata, "GET", {}),
        ("/ready", model_ready, "GET", {}),
        ("/config", model_config, "GET", {}),
        ("/infer", infer, "POST", {"responses": infer_answers, "openapi_extra": infer_body}),
    ]
    guards = guarded.get("dependencies", [])
    for prefix, check in (("/models/{model}", this_model), ("/models/{model}/versions/{version}", this_version)):
        for suffix, endpoint, method, extra in routes:
            router.add_api_route(
                prefix + suffix,
                endpoint,
                methods=[method],
                dependencies=[Depends(check), *guards],
                **({"responses": refusals(*unauthorised, 404)} | extra),
            )

    return router


def split_body(body: bytes, header_length: str | None) -> tuple[InferRequest, bytes]:
    """The request's JSON part, validated, and the binary tensor data after it."""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise ApiError(400, f"{HEADER_LENGTH} {header_length!r} is not a length within the body")
        body, binary = body[: int(header_length)], body[int(header_length) :]
    else:
        binary = b""
    try:
        return InferRequest.model_validate_json(body), binary
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise ApiError(400, f"{where}: {first.get('msg', 'invalid')}") from None


def crops_of(tensor: RequestInput, binary: bytes, served: Served, size: int) -> np.ndarray:
    """The input tensor as the model's crops: encoded files decoded (as predict does), or crops checked."""
    count = int(np.prod(tensor.shape)) if all(d >= 1 for d in tensor.shape) else 0
    if count == 0:
        raise ApiError(400, f"input {tensor.name!r}: shape {tensor.shape} holds no image")
    nbytes = tensor.parameters.get("binary_data_size")
    if nbytes is not None and (not isinstance(nbytes, int) or isinstance(nbytes, bool) or nbytes != len(binary)):
        raise ApiError(400, f"input {tensor.name!r}: binary_data_size {nbytes!r} but {len(binary)} bytes follow")
    if (nbytes is None) == (tensor.data is None):
        raise ApiError(400, f"input {tensor.name!r}: give either data or binary_data_size")
    if tensor.name == ENCODED:
        if tensor.datatype != "BYTES" or len(tensor.shape) != 1:
            raise ApiError(400, f"input {ENCODED!r} is BYTES of shape [N], not {tensor.datatype} {tensor.shape}")
        served.check_count(count)
        files = byte_elements(binary) if nbytes is not None else base64_elements(tensor.data)
        if len(files) != count:
            raise ApiError(400, f"input {ENCODED!r}: shape {tensor.shape} but {len(files)} elements")
        return served.crops([(f"{ENCODED}[{i}]", data) for i, data in enumerate(files)])
    if tensor.name == CROPS:
        if tensor.datatype != "UINT8" or len(tensor.shape) != 4 or tensor.shape[1:] != [size, size, 3]:
            expected = f"UINT8 [N, {size}, {size}, 3]"
            raise ApiError(400, f"input {CROPS!r} is {expected}, not {tensor.datatype} {tensor.shape}")
        served.check_count(tensor.shape[0])
        if nbytes is not None:
            if nbytes != count:
                raise ApiError(400, f"input {CROPS!r}: shape {tensor.shape} needs {count} bytes, not {nbytes}")
            return np.frombuffer(binary, np.uint8).reshape(tensor.shape).copy()
        values = np.asarray(tensor.data, dtype=object).ravel()
        if values.size != count or not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            raise ApiError(400, f"input {CROPS!r}: {count} integers 0-255 expected")
        pixels = values.astype(np.int64)
        if pixels.min(initial=0) < 0 or pixels.max(initial=0) > 255:
            raise ApiError(400, f"input {CROPS!r}: values must lie in 0-255")
        return pixels.astype(np.uint8).reshape(tensor.shape)
    raise ApiError(400, f"no input {tensor.name!r}: the model takes {ENCODED!r} or {CROPS!r}")


def byte_elements(binary: bytes) -> list[bytes]:
    """A BYTES tensor in the binary extension: each element a little-endian uint32 length, then its bytes."""
    out, at = [], 0
    while at < len(binary):
        if at + 4 > len(binary):
            raise ApiError(400, f"input {ENCODED!r}: binary data ends inside an element's length")
        (length,) = struct.unpack_from("<I", binary, at)
        if at + 4 + length > len(binary):
            raise ApiError(400, f"input {ENCODED!r}: an element of {length} bytes runs past the data")
        out.append(binary[at + 4 : at + 4 + length])
        at += 4 + length
    return out


def base64_elements(data: list[Any]) -> list[bytes]:
    """A BYTES tensor in JSON: binary files cannot be JSON strings, so each element is base64."""
    out = []
    for i, value in enumerate(np.asarray(data, dtype=object).ravel()):
        try:
            out.append(base64.b64decode(value, validate=True))
        except (binascii.Error, ValueError, TypeError):
            raise ApiError(400, f"input {ENCODED!r} element {i}: not a base64 string") from None
    return out


def answer(request: InferRequest, rows: np.ndarray, classes: list[str], name: str) -> Response:
    """The response, each output as JSON or binary as the request asks (the extension's parameters)."""
    wanted = request.outputs or [RequestOutput(name=PROBABILITIES), RequestOutput(name=LABEL)]
    all_binary = bool(request.parameters.get("binary_data_output", False))
    labels = [classes[i] for i in rows.argmax(1)]
    outputs, blobs = [], []
    for out in wanted:
        binary = bool(out.parameters.get("binary_data", all_binary))
        if out.name == PROBABILITIES:
            tensor = ResponseOutput(name=out.name, datatype="FP32", shape=list(rows.shape))
            blob, data = rows.astype("<f4").tobytes(), rows.astype(float).ravel().tolist()
        else:
            tensor = ResponseOutput(name=out.name, datatype="BYTES", shape=[len(labels)])
            encoded = [label.encode() for label in labels]
            blob, data = b"".join(struct.pack("<I", len(e)) + e for e in encoded), labels
        if binary:
            tensor.parameters = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor.data = data
        outputs.append(tensor)
    body = InferResponse(model_name=name, model_version=VERSION, id=request.id, outputs=outputs)
    header = body.model_dump_json(exclude_none=True).encode()
    if not blobs:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(blobs), media_type="application/octet-stream", headers={HEADER_LENGTH: str(len(header))}
    )


def inlined(model: type[BaseModel]) -> dict:
    """A model's JSON schema with its `$defs` written in place, for an `openapi_extra` request body."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def resolve(node):
        if isinstance(node, dict):
            if "$ref" in node:
                return resolve(defs[node["$ref"].rsplit("/", 1)[-1]])
            return {k: resolve(v) for k, v in node.items()}
        return [resolve(v) for v in node] if isinstance(node, list) else node

    return resolve(schema)
