"""The event stream: stages report start, progress and end; cancellation reaches the work."""

import json
import threading

import pytest

from headstart.events import Cancelled, EventBus, as_bus


def test_a_stage_reports_start_progress_and_end():
    seen = []
    bus = EventBus([seen.append])
    with bus.stage("extract", total=3, unit="images", description="Extracting") as progress:
        progress.advance()
        progress.advance(2, val_loss=0.5)
    assert [(e.kind, e.step, e.status) for e in seen] == [
        ("start", 0, ""),
        ("progress", 1, ""),
        ("progress", 3, ""),
        ("end", 3, "done"),
    ]
    assert seen[2].metrics == {"val_loss": 0.5} and seen[2].total == 3 and seen[2].unit == "images"
    assert json.loads(json.dumps(seen[-1].to_dict()))["description"] == "Extracting"


def test_a_failing_stage_ends_as_failed_and_the_error_propagates():
    seen = []
    with pytest.raises(ValueError, match="boom"), EventBus([seen.append]).stage("train_head") as progress:
        progress.advance()
        raise ValueError("boom")
    assert seen[-1].kind == "end" and seen[-1].status == "failed"


def test_a_subscriber_can_cancel_by_raising():
    def stop_at_two(event):
        if event.step == 2:
            raise Cancelled()

    seen = []
    with pytest.raises(Cancelled), EventBus([seen.append, stop_at_two]).stage("fine_tune", 10) as progress:
        for _ in range(10):
            progress.advance()
    assert [e.step for e in seen if e.kind == "progress"] == [1, 2] and seen[-1].status == "cancelled"


def test_cancel_from_another_thread_raises_at_the_next_event():
    bus, started, proceed = EventBus(), threading.Event(), threading.Event()
    steps = []

    def work():
        with bus.stage("extract", 100) as progress:
            for i in range(100):
                if i == 3:
                    started.set()
                    proceed.wait(5)
                progress.advance()
                steps.append(i)

    outcome = []

    def run():
        try:
            work()
        except Cancelled:
            outcome.append("cancelled")

    thread = threading.Thread(target=run)
    thread.start()
    started.wait(5)
    bus.cancel()
    proceed.set()
    thread.join(5)
    assert outcome == ["cancelled"] and steps == [0, 1, 2]  # no subscriber, yet the cancel was heard


def test_as_bus_wraps_a_callable_and_keeps_a_bus():
    bus = EventBus()
    assert as_bus(bus) is bus
    seen = []
    with as_bus(seen.append).stage("predict"):
        pass
    assert [e.kind for e in seen] == ["start", "end"]
    assert as_bus(None).subscribers == []
