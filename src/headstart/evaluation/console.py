"""Results in the terminal (rich): the metrics table, the confusion matrix, skipped files, leakage."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from .leakage import LeakageReport
from .metrics import Metrics


def metrics_table(metrics: Metrics) -> Table:
    """Precision, recall, F1 and support per class, as a rich table."""
    table = Table()
    for col, justify in (
        ("class", "left"),
        ("precision", "right"),
        ("recall", "right"),
        ("F1", "right"),
        ("support", "right"),
    ):
        table.add_column(col, justify=justify)
    for name, p, r, f, s in zip(metrics.classes, metrics.precision, metrics.recall, metrics.f1, metrics.support):
        table.add_row(name, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", str(s))
    return table


def confusion_table(metrics: Metrics) -> Table:
    """The confusion matrix as a rich table, the diagonal in green."""
    table = Table()
    table.add_column("true \\ predicted")
    for name in metrics.classes:
        table.add_column(name, justify="right")
    for i, (name, row) in enumerate(zip(metrics.classes, metrics.confusion)):
        table.add_row(
            name, *[f"[bold green]{v}[/]" if j == i else (f"[red]{v}[/]" if v else "0") for j, v in enumerate(row)]
        )
    return table


def headline(metrics: Metrics) -> str:
    """Accuracy (right of how many), macro F1 and top-k, in one line."""
    correct = sum(metrics.confusion[i][i] for i in range(len(metrics.classes)))
    top_k = ", ".join(f"top-{k} {v:.3f}" for k, v in metrics.top_k_accuracy.items() if k > 1)
    return f"accuracy [bold]{metrics.accuracy:.3f}[/] ({correct}/{metrics.count}), macro F1 {metrics.macro_f1:.3f}" + (
        f", {top_k}" if top_k else ""
    )


def evaluation_view(metrics: Metrics, title: str) -> Group:
    """The headline, the per-class table and the confusion matrix, under `title`."""
    return Group(
        Text.from_markup(f"[bold]{title}[/]: {headline(metrics)}"),
        metrics_table(metrics),
        Text("Confusion matrix (rows: true class, columns: predicted)"),
        confusion_table(metrics),
    )


def print_skipped(
    console: Console, skipped: Mapping[Path | str, str], limit: int = 20, heading: str = "Skipped {n} file(s):"
) -> None:
    """Each file left out, with the reason (the first `limit` of them); with another `heading`,
    any list of files and a line about each (the decoder's notes)."""
    items = [(str(p), r) for p, r in skipped.items()]
    if not items:
        return
    console.print(f"[yellow]{heading.format(n=len(items))}[/]")
    for path, reason in items[:limit]:
        console.print(f"  {path}: {reason}", highlight=False, markup=False)
    if len(items) > limit:
        console.print(f"  … and {len(items) - limit} more (all listed in model.json)")


def print_notes(console: Console, notes: Mapping[Path | str, str], limit: int = 20) -> None:
    """Each file used although its decoder warned (a corrupt EXIF block), with the warning."""
    print_skipped(console, notes, limit, heading="Used {n} file(s) despite a decoder warning:")


def print_leakage(console: Console, leakage: LeakageReport | None, limit: int = 10) -> None:
    """Near-copies across splits (named), duplicates, and the leakage verdict with its fix."""
    if leakage is None:
        return
    cross = leakage.cross_split
    if cross:
        console.print(
            f"[yellow]{len(cross)} held-out image(s) have a near-copy in train "
            f"(similarity >= {leakage.threshold:.2f}):[/]"
        )
        for d in cross[:limit]:
            console.print(f"  {d.path}  ~  {d.match}  ({d.similarity:.3f})", markup=False, highlight=False)
        if len(cross) > limit:
            console.print(f"  … and {len(cross) - limit} more (all listed in model.json)")
    within, exact = leakage.within_split, leakage.exact_duplicates
    if within or exact:
        console.print(
            f"[yellow]Duplicates inside splits: {len(within)} near-duplicate "
            f"pair(s), {len(exact)} set(s) of identical files[/]"
            " (they inflate counts; listed in model.json)"
        )
    if message := leakage.message():
        console.print(f"[bold yellow]Warning:[/] {message}")
