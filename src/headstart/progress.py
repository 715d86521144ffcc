"""The terminal's progress bars: an event subscriber drawing one rich bar per running stage.

`event_bus(on_event, quiet)` is how every entry point (API and CLI) sets up its events: the
caller's subscriber, plus the bars unless `quiet`, HEADSTART_QUIET=1, or stderr is no terminal.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rich.console import Console

from .events import Event, EventBus, Subscriber

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

console = Console(stderr=True)


def quiet_by_default() -> bool:
    """HEADSTART_QUIET asks for no progress bars."""
    return os.environ.get("HEADSTART_QUIET", "") not in ("", "0")


class ProgressBars:
    """Subscriber: a bar per stage, with its latest validation numbers; bars vanish when done."""

    def __init__(self, target: Console = console):
        self.console = target
        self.progress: Progress | None = None
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, event: Event) -> None:
        if event.kind == "start":
            if self.progress is None:
                from rich.progress import (  # loaded when a bar is first drawn: predicting one image draws none
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                    TimeRemainingColumn,
                )

                self.progress = Progress(
                    TextColumn("[bold]{task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TextColumn("{task.fields[info]}"),
                    TimeElapsedColumn(),
                    TimeRemainingColumn(),
                    console=self.console,
                    transient=True,
                )
                self.progress.start()
            self.tasks[event.stage] = self.progress.add_task(event.description, total=event.total, info="")
        elif self.progress is not None and event.stage in self.tasks:
            task = self.tasks[event.stage]
            if event.kind == "progress":
                self.progress.update(task, completed=event.step, info=_info(event.metrics))
            else:
                self.progress.remove_task(self.tasks.pop(event.stage))
                if not self.tasks:
                    self.progress.stop()
                    self.progress = None


def _info(metrics) -> str:
    if "val_loss" in metrics:
        return f"val loss {metrics['val_loss']:.3f} acc {metrics.get('val_accuracy', 0):.3f}"
    return ""


def event_bus(on_event: EventBus | Subscriber | None = None, quiet: bool = False) -> EventBus:
    """The caller's subscriber, plus progress bars when a person is watching a terminal; a bus
    passed in (from an outer call that set this up already) is used as it is."""
    if isinstance(on_event, EventBus):
        return on_event
    bars = None if quiet or quiet_by_default() or not console.is_terminal else ProgressBars()
    return EventBus([on_event, bars])
