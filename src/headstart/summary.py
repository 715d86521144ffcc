"""Rich renderings of results: the metrics table, the confusion matrix, skipped files."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console, Group
from rich.table import Table

from .metrics import Metrics


def metrics_table(metrics: Metrics, title: str) -> Table:
    table = Table(title=title, title_justify="left", show_footer=True)
    table.add_column("class", footer=f"accuracy {metrics.accuracy:.3f}")
    table.add_column("precision", justify="right", footer=f"n = {metrics.count}")
    table.add_column("recall", justify="right")
    table.add_column("F1", justify="right", footer=f"macro {metrics.macro_f1:.3f}")
    table.add_column("support", justify="right")
    for name, p, r, f, s in zip(metrics.classes, metrics.precision, metrics.recall, metrics.f1, metrics.support):
        table.add_row(name, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", str(s))
    return table


def confusion_table(metrics: Metrics) -> Table:
    table = Table(title="Confusion matrix (rows: true, columns: predicted)", title_justify="left")
    table.add_column("true \\ predicted")
    for name in metrics.classes:
        table.add_column(name, justify="right")
    for name, row in zip(metrics.classes, metrics.confusion):
        i = metrics.classes.index(name)
        table.add_row(name, *[f"[bold green]{v}[/]" if j == i else (f"[red]{v}[/]" if v else "0") for j, v in enumerate(row)])
    return table


def evaluation_view(metrics: Metrics, title: str) -> Group:
    return Group(metrics_table(metrics, title), confusion_table(metrics))


def print_skipped(console: Console, skipped: dict[Path, str] | list[dict], limit: int = 20) -> None:
    items = [(str(p), r) for p, r in skipped.items()] if isinstance(skipped, dict) else [(s["path"], s["reason"]) for s in skipped]
    if not items:
        return
    console.print(f"[yellow]Skipped {len(items)} file(s):[/]")
    for path, reason in items[:limit]:
        console.print(f"  {path}: {reason}", highlight=False, markup=False)
    if len(items) > limit:
        console.print(f"  … and {len(items) - limit} more (all listed in model.json)")
