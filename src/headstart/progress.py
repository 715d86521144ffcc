"""Rich progress bars for long work, silenced with HEADSTART_QUIET=1 or quiet=True."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

console = Console(stderr=True)


def quiet_by_default() -> bool:
    return os.environ.get("HEADSTART_QUIET", "") not in ("", "0")


@contextmanager
def progress_bar(description: str, total: int | None, quiet: bool = False) -> Iterator[Callable[..., None]]:
    """Yield `advance(n=1, **fields)`; the bar goes away when done."""
    if quiet or quiet_by_default() or not console.is_terminal:
        yield lambda n=1, **fields: None
        return
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task(description, total=total, info="")
        yield lambda n=1, **fields: progress.update(task, advance=n, **({"info": fields["info"]} if "info" in fields else {}))
