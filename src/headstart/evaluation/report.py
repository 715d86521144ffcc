"""The report: every figure as a PNG, per_class.csv, and one self-contained report.html holding
all of them with the configuration, skipped files, near-duplicates, timings and environment.

It is written from an `Evaluation` (what the model got right and wrong) and the model's
`TrainingRecord` (how it was trained); it never needs the classifier itself.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..display import printable, spreadsheet_cell
from ..errors import HeadstartError
from ..events import EventBus, as_bus
from ..fsutil import atomic_write_bytes
from ..provenance import environment
from ..schema import is_bundle
from .evaluation import Evaluation
from .figure_cache import render
from .figures import PER_CLASS_CSV, REPORT_FIGURES, REPORT_PAGE, report_files
from .metrics import Metrics
from .record import TrainingRecord

REPORT_MARKER = '<meta name="generator" content="headstart">'  # how a report.html headstart wrote is recognised

STYLE = """body{font:15px/1.45 system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}img{max-width:100%;display:block;margin:.8em 0}
table{border-collapse:collapse;margin:.6em 0}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:left}
th{background:#f4f4f4}.lead{color:#555}.cards{display:flex;gap:1em;flex-wrap:wrap}
.cards div{border:1px solid #ddd;border-radius:8px;padding:.6em 1em;color:#555}
.cards span{display:block;font-size:1.8em;color:#111}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:.6em 1em;border-radius:6px}"""


class Report:
    """The written report; displays inline in a notebook."""

    def __init__(self, path: Path, files: dict[str, Path]):
        self.path = path
        self.files = files

    def _repr_html_(self) -> str:
        page = html.escape(self.path.read_text("utf-8"))
        return f'<iframe srcdoc="{page}" style="width:100%;height:800px;border:0"></iframe>'

    def __repr__(self) -> str:
        return f"Report({self.path})"


def write_per_class_csv(metrics: Metrics, path: Path) -> None:
    """Precision, recall, F1 and support per class, averages and top-k accuracy, as CSV."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, ["class", "precision", "recall", "f1", "support"], lineterminator="\n")
    writer.writeheader()
    for row in metrics.per_class_rows():
        writer.writerow({k: _csv_cell(v) for k, v in row.items()})
    atomic_write_bytes(path, text.getvalue().encode("utf-8", "surrogateescape"))  # class names' exact bytes


def _csv_cell(value) -> str | int:
    if isinstance(value, float):
        return f"{value:.6f}"
    return spreadsheet_cell(value) if isinstance(value, str) else value


def check_report_folder(folder: Path) -> None:
    """Refuse to overwrite files headstart did not write: report files may replace only their
    own kind, in a model bundle or beside a report.html that headstart wrote."""
    if not folder.exists():
        return
    if not folder.is_dir():
        raise HeadstartError(f"{folder}: exists and is not a folder; choose another report --out")
    if is_bundle(folder) or _ours(folder / REPORT_PAGE):
        return
    for name in report_files():
        if (folder / name).exists():
            raise HeadstartError(
                f"{folder / name}: exists and was not written by headstart; choose another report --out"
            )


def _ours(report_html: Path) -> bool:
    try:
        with open(report_html, "rb") as f:
            return REPORT_MARKER.encode() in f.read(4096)
    except OSError:
        return False


def write_report(
    evaluation: Evaluation, record: TrainingRecord, directory: str | Path, events: EventBus | None = None
) -> Report:
    """Write the PNGs, per_class.csv and a self-contained report.html into `directory`.

    Args:
        evaluation: the model's predictions on the images to report on.
        record: how the model was trained (curves, data, leakage, calibration, settings).
        directory: where to write (created if missing).

    Returns:
        The report: `path` of report.html and `files`, every file written by name.
    """
    out = Path(directory)
    check_report_folder(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = [(f, spec) for f in REPORT_FIGURES.values() if (spec := f.spec(evaluation, record)) is not None]
    with as_bus(events).stage("report", len(figures) + 1, "files", "Writing the report") as progress:
        images: dict[str, bytes] = {}
        files: dict[str, Path] = {}
        for figure, spec in figures:
            images[figure.name] = render(spec)
            files[figure.name] = out / f"{figure.name}.png"
            atomic_write_bytes(files[figure.name], images[figure.name])
            progress.advance()
        files["per_class"] = out / PER_CLASS_CSV
        write_per_class_csv(evaluation.metrics, files["per_class"])
        files["report"] = out / REPORT_PAGE
        body = "".join(_page(evaluation, record, images))
        page = f"""<!doctype html><html lang=en><head><meta charset=utf-8>{REPORT_MARKER}<title>headstart report</title>
<style>{STYLE}</style></head>
<body>{body}</body></html>"""
        atomic_write_bytes(files["report"], page.encode("utf-8", "backslashreplace"))
        progress.advance()
    return Report(files["report"], files)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _escape(value) -> str:
    """User text (file and class names) for the page: any bytes, HTML-escaped."""
    return html.escape(printable(str(value)))


def _fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


Part = Callable[[Evaluation, TrainingRecord], "str | None"]


@dataclass(frozen=True)
class Section:
    """A section of report.html: its heading, the text before its figures (None: the section is
    left out) and after them. Figures name the section they belong to (`ReportFigure.section`)."""

    title: str
    before: Part
    after: Part = lambda ev, record: ""


def _evaluation_table(ev: Evaluation, record: TrainingRecord) -> str:
    rows = [
        [r["class"], _fmt(r["precision"]), _fmt(r["recall"]), _fmt(r["f1"]), r["support"]] for r in ev.per_class_rows()
    ]
    return _table(["class", "precision", "recall", "F1", "support"], rows)


def _calibration_text(ev: Evaluation, record: TrainingRecord) -> str:
    calibration = record.calibration
    if calibration.temperature != 1.0:
        scaled = (
            f"; temperature scaling (T = {calibration.temperature:.2f}, fitted on validation) changed it from "
            f"{calibration.ece_uncalibrated:.3f}"
        )
    else:
        scaled = "; no temperature scaling (train with <code>--calibrate</code> to fit one)"
    return (
        "<p>Expected calibration error (15 bins) on the evaluated split: "
        f"<b>{ev.expected_calibration_error:.3f}</b>{scaled}.</p>"
    )


def _training_text(ev: Evaluation, record: TrainingRecord) -> str | None:
    return f"<p>{_training_summary(record)}</p>" if record.history.val_loss else None


def _data_counts(ev: Evaluation, record: TrainingRecord) -> str | None:
    d = record.data
    if not d:
        return None
    counts_rows = [[c] + [d.counts[s].get(c, 0) for s in d.counts] for c in d.classes]
    return "<p>" + _escape(d.root) + "</p>" + _table(["class", *d.counts], counts_rows)


def _data_files(ev: Evaluation, record: TrainingRecord) -> str:
    skipped = record.skipped
    near = record.leakage.cross_split if record.leakage else []
    near_rows = [[x.path, x.split, x.match, f"{x.similarity:.3f}"] for x in near[:50]]
    return (
        "<h3>Skipped files</h3>"
        + (_table(["file", "reason"], list(skipped.items())) if skipped else "<p>none</p>")
        + (
            "<h3>Used despite a decoder warning</h3>" + _table(["file", "warning"], list(record.notes.items()))
            if record.notes
            else ""
        )
        + "<h3>Near-duplicates across splits</h3>"
        + (
            _table(["held-out image", "split", "most similar training image", "similarity"], near_rows)
            if near
            else "<p>none found</p>"
        )
    )


SECTIONS = (
    Section("Evaluation", _evaluation_table),
    Section("Mistakes", lambda ev, record: ""),
    Section("Calibration", _calibration_text),
    Section("Which classes overlap", lambda ev, record: ""),
    Section("Training", _training_text),
    Section("Data", _data_counts, _data_files),
)


def _page(ev: Evaluation, record: TrainingRecord, images: dict[str, bytes]) -> list[str]:
    """The page's parts: the headline, each section with its figures, then the configuration."""

    def img(figure) -> str:
        if figure.name not in images:
            return ""
        data = base64.b64encode(images[figure.name]).decode()
        return f'<img alt="{html.escape(figure.alt)}" src="data:image/png;base64,{data}">'

    parts = [_headline(ev, record)]
    if record.leakage and (message := record.leakage.message()):
        parts.append(f"<p class=warn>⚠ {html.escape(message)}</p>")
    known = {section.title for section in SECTIONS}
    extra = dict.fromkeys(f.section for f in REPORT_FIGURES.values() if f.section not in known)
    for section in (*SECTIONS, *(Section(title, lambda ev, record: "") for title in extra)):
        if (before := section.before(ev, record)) is None:
            continue
        shown = "".join(img(f) for f in REPORT_FIGURES.values() if f.section == section.title)
        parts.append(f"<h2>{html.escape(section.title)}</h2>{before}{shown}{section.after(ev, record)}")
    settings = [[k, json.dumps(v)] for k, v in record.hparams.to_dict().items()]
    parts.append("<h2>Configuration</h2>" + _table(["setting", "value"], settings))
    if record.timings:
        parts.append("<h3>Timings</h3>" + _table(["step", "value"], list(record.timings.to_dict().items())))
    parts.append("<h3>Environment</h3>" + _table(["", "version"], [[k, v] for k, v in environment().items()]))
    return parts


def _headline(ev: Evaluation, record: TrainingRecord) -> str:
    m, ece = ev.metrics, ev.expected_calibration_error
    top_k = ", ".join(f"top-{k} {v:.3f}" for k, v in m.top_k_accuracy.items() if k > 1)
    return (
        f"<h1>headstart report</h1><p class=lead>{len(ev.classes)} classes "
        f"· backbone <b>{html.escape(record.hparams.backbone)}</b>"
        f"{' with flip test-time augmentation' if record.hparams.tta == 'flip' else ''}"
        f" · {html.escape(record.created)}</p>"
        f"<div class=cards><div><span>{m.accuracy:.3f}</span>accuracy ({html.escape(ev.split)}, n = {m.count})</div>"
        f"<div><span>{m.macro_f1:.3f}</span>macro F1</div><div><span>{ece:.3f}</span>expected calibration error</div>"
        + (f"<div><span>{html.escape(top_k)}</span>top-k accuracy</div>" if top_k else "")
        + "</div>"
    )


def _training_summary(record: TrainingRecord) -> str:
    history, tuned = record.history, record.fine_tune
    if history.l2:
        text = (
            f"The head: softmax regression fitted by L-BFGS at {len(history.l2)} L2 strengths, "
            f"kept at {history.l2[history.best_epoch - 1]:.3g} (the lowest validation loss)."
        )
    else:
        text = f"The head: {len(history.val_loss)} epochs, best (restored) at epoch {history.best_epoch}."
    if tuned and tuned.val_loss:
        kept = f"best (restored) at epoch {tuned.best_epoch}" if tuned.best_epoch else "none beat stage 1, kept"
        text += f" Fine-tuning: {len(tuned.val_loss)} epochs, {kept}."
    return text
