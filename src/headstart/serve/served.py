"""What both of the server's protocols share (`/v1` in app.py, `/v2` in open_inference.py): the
served model with its batcher, limits and crop; its Prometheus metrics; the refusal body and how
the OpenAPI document declares it."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Histogram
from pydantic import BaseModel

from ..display import printable
from ..inference.predictor import Predictor
from ..web.errors import ApiError
from ..web.uploads import prepare_crop
from .batcher import GreedyBatcher


class ErrorBody(BaseModel):
    """Every refusal's body: one line saying what was wrong."""

    error: str


def refusals(*statuses: int) -> dict:
    """The OpenAPI `responses` entries for the refusals an endpoint can answer with."""
    why = {
        400: "malformed request (bad base64, bad tensor)",
        401: "missing or wrong API key",
        404: "no such model",
        413: "too many images, an image or the body too large",
        422: "not an image, or a parameter out of range",
        503: "the model is still loading",
    }
    return {status: {"model": ErrorBody, "description": why[status]} for status in statuses}


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


@dataclass
class Served:
    """The model as both protocols serve it: one batcher, one set of limits, one crop."""

    predictor: Predictor
    name: str
    metrics: Metrics
    max_images: int
    max_image_bytes: int
    ready: bool = False
    batcher: GreedyBatcher | None = None
    decoding: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(2 * (os.cpu_count() or 1))  # bounds memory
    )

    def check_count(self, n: int) -> None:
        """A 413 when a request holds more images than the limit."""
        if n > self.max_images:
            raise ApiError(413, f"{n} images in one request; the limit is {self.max_images}")

    def crops(self, images: list[tuple[str, bytes]]) -> np.ndarray:
        """Encoded image files (name, bytes) as the model's crops, decoded as `headstart predict` does."""
        self.check_count(len(images))
        if not images:
            raise ApiError(400, "no image in the request")
        for filename, data in images:
            if len(data) > self.max_image_bytes:
                raise ApiError(413, f"{printable(filename or 'image')}: over the {self.max_image_bytes} bytes limit")
        with self.decoding:
            return np.stack([prepare_crop(data, filename, self.predictor) for filename, data in images])

    def probabilities(self, crops: np.ndarray) -> np.ndarray:
        """Class probabilities for a stack of crops, batched with other requests'."""
        rows = self.batcher.submit(crops).result()
        self.metrics.images.inc(len(crops))
        return rows
