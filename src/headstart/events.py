"""Progress of long work as a stream of typed events, delivered to subscribers.

Every long step (scanning a folder, extracting features, each epoch of each training stage,
evaluation, export, report) runs inside `EventBus.stage(...)`, which emits a `start` event, a
`progress` event per unit of work (images, epochs) and an `end` event, also when the work fails or
is cancelled (its `status` says which). Subscribers are plain callables: the terminal's progress
bars are one (`headstart.progress.ProgressBars`), a notebook callback or a web page another. With
no subscriber nothing is drawn.

A subscriber may stop the work: it raises `Cancelled`, or anyone calls `EventBus.cancel()` (from
any thread) and the next `progress` event raises `Cancelled` inside the work. A training run treats
it as it treats Ctrl-C: the last finished epoch stays checkpointed and can be resumed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Literal

from .errors import HeadstartError

Kind = Literal["start", "progress", "end"]
Status = Literal["", "done", "cancelled", "failed"]


@dataclass(frozen=True)
class Event:
    """One report from a stage of work.

    Attributes:
        stage: what is running: "scan", "extract", "views", "train_head", "fine_tune", "calibrate",
            "describe", "save", "evaluate", "predict", "export", "report".
        kind: "start", "progress" or "end".
        step: units of work done so far (images, epochs).
        total: units expected, None when unknown (scanning).
        unit: what a step counts: "images", "epochs", "files".
        description: a short human label, e.g. "Extracting features".
        metrics: the latest numbers, e.g. {"epoch": 3, "val_loss": 0.21, "val_accuracy": 0.93}.
        elapsed: seconds since the stage started.
        status: on "end": "done", "cancelled" or "failed"; empty otherwise.
    """

    stage: str
    kind: Kind
    step: int = 0
    total: int | None = None
    unit: str = ""
    description: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    status: Status = ""

    def to_dict(self) -> dict:
        """JSON-shaped, for a log line or a server-sent event."""
        return asdict(self) | {"metrics": dict(self.metrics)}


Subscriber = Callable[[Event], None]


class Cancelled(HeadstartError):
    """The work was cancelled by a subscriber or `EventBus.cancel()`."""

    def __init__(self, message: str = "cancelled"):
        super().__init__(message)


class EventBus:
    """Delivers events to subscribers, in order, on the thread doing the work."""

    def __init__(self, subscribers: Iterable[Subscriber | None] = ()):
        self.subscribers: list[Subscriber] = [s for s in subscribers if s is not None]
        self._cancel = threading.Event()

    def subscribe(self, subscriber: Subscriber) -> None:
        """Add a subscriber; it receives every later event."""
        self.subscribers.append(subscriber)

    def cancel(self) -> None:
        """Ask the work to stop at its next event (safe from any thread)."""
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        """`cancel()` was called."""
        return self._cancel.is_set()

    def emit(self, event: Event) -> None:
        """Deliver `event` to every subscriber; after `cancel()`, a progress event raises `Cancelled`."""
        for subscriber in self.subscribers:
            subscriber(event)
        if self._cancel.is_set() and event.kind == "progress":  # so that every stage that started also ends
            raise Cancelled()

    @contextmanager
    def stage(
        self, name: str, total: int | None = None, unit: str = "", description: str = ""
    ) -> Iterator[StageProgress]:
        """Run a block as one stage: `start` now, `progress` from the block, `end` when it leaves."""
        progress = StageProgress(self, name, total, unit, description or name)
        progress.emit("start")
        status: Status = "failed"
        try:
            yield progress
            status = "done"
        except (Cancelled, KeyboardInterrupt):
            status = "cancelled"
            raise
        finally:
            progress.emit("end", status)


class StageProgress:
    """The handle a running stage reports through."""

    def __init__(self, bus: EventBus, stage: str, total: int | None, unit: str, description: str):
        self.bus, self.stage, self.total, self.unit, self.description = bus, stage, total, unit, description
        self.step = 0
        self.metrics: dict[str, float] = {}
        self.started = time.perf_counter()

    def advance(self, n: int = 1, **metrics: float) -> None:
        """`n` more units done; `metrics` update the latest numbers."""
        self.step += n
        self.metrics.update(metrics)
        self.emit("progress")

    def emit(self, kind: Kind, status: Status = "") -> None:
        """Send the stage's current state as an event of `kind`."""
        if self.bus.subscribers or self.bus.cancelled:  # nobody listens: build no event on hot paths
            self.bus.emit(
                Event(
                    self.stage,
                    kind,
                    self.step,
                    self.total,
                    self.unit,
                    self.description,
                    dict(self.metrics),
                    round(time.perf_counter() - self.started, 3),
                    status,
                )
            )


def as_bus(events: EventBus | Subscriber | None) -> EventBus:
    """An EventBus from a bus, a single subscriber, or None (no subscribers)."""
    if isinstance(events, EventBus):
        return events
    return EventBus([events])
