"""Commands on a model's life: compare, train, evaluate, predict, report, export."""

from __future__ import annotations

import sys
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from ..display import printable
from ..errors import HeadstartError
from ..options import RayOptions
from .arguments import hparams_from_args
from .console import err, events, out


def _default_out(data: str) -> Path:
    """runs/<name>, runs/<name>-2, ...: never silently replaces an earlier model."""
    name = Path(data).expanduser().resolve().name if Path(data).expanduser().exists() else str(data)
    base = Path("runs") / (name or "model")
    candidate, n = base, 2
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate


def cmd_train(args) -> int:
    """`headstart train`: `Classifier.train` with the flags' settings and options, then a summary and the report."""
    from ..classifier import Classifier
    from ..distributed.ddp import join
    from ..training.options import RunOptions

    hp = hparams_from_args(args)
    ranks = join()  # one process, or one of torchrun's: rank 0 speaks and writes the report
    options = RunOptions(
        out=args.out,
        resume=args.resume,
        weights=args.weights,
        engine=_engine(args),
        ray=_ray_options(args),
        features=args.features,
        quiet=args.quiet or not ranks.leader,  # one set of progress bars: rank 0's
        ranks=ranks,
    )
    if options.out is None:
        options = RunOptions.of(options, out=_default_out(args.data))
    clf = Classifier.train(args.data, hp, options)
    if ranks.leader:
        _print_training(args, hp, clf, options.out)
    return 0


def _print_training(args, hp, clf, target: Path) -> None:
    from ..data.dataset import IMBALANCE_RATIO
    from ..evaluation.console import evaluation_view, print_leakage, print_notes, print_skipped

    record = clf.record
    split_text = ", ".join(f"{split} {sum(c.values())}" for split, c in record.data.counts.items())
    out.print(f"Data: {record.data.root}  ({len(clf.classes)} classes; {split_text})")
    if hp.backbone == "auto":
        tta = " with flip test-time augmentation" if clf.hparams.tta == "flip" else ""
        out.print(f"Backbone: {clf.hparams.backbone}{tta}, as `headstart compare` recommends for this data")
    print_skipped(err, clf.record.skipped)
    print_notes(err, clf.record.notes)
    if record.data.imbalance >= IMBALANCE_RATIO and hp.class_weights == "none":
        err.print(
            f"[yellow]Classes are imbalanced ({record.data.imbalance:.1f}:1 in train); consider --class-weights auto[/]"
        )
    t, h = record.timings, record.history
    if h.l2:
        head = f"L2 {h.l2[h.best_epoch - 1]:.3g} of {len(h.l2)} strengths tried (L-BFGS)"
    else:
        head = f"{len(h.val_loss)} epochs (best {h.best_epoch})"
    out.print(
        f"Features: {t.images_computed} computed, {t.images_from_cache} "
        f"from cache in {t.feature_extraction_s:.1f} s; head: {head} in {t.head_training_s:.1f} s"
    )
    out.print(evaluation_view(clf.metrics, f"Evaluation on the {record.evaluated_on} split"))
    print_leakage(err, clf.record.leakage)
    out.print(f"Model saved to [bold]{target}[/]  ({t.total_s:.1f} s in all)")
    if not args.no_report:
        report = clf.report(target, quiet=args.quiet)
        out.print(f"Report: [bold]{report.path}[/] (and the PNGs and per_class.csv beside it)")


def _ray_options(args) -> RayOptions | None:
    """`--engine ray`'s cluster (--ray-address, --workers), else None: the work stays in this process."""
    if args.engine != "ray":
        return None
    return RayOptions(address=args.ray_address, workers=args.workers)


def _engine(args) -> str:
    """The backbone's runtime in this process (with --engine ray: the default one)."""
    return "auto" if args.engine == "ray" else args.engine


def cmd_embed(args) -> int:
    """`headstart embed`: features as resumable Parquet shards."""
    from ..distributed.embeddings import embed

    if args.engine not in ("auto", "ray"):
        raise HeadstartError("embed runs onnxruntime here (--engine auto) or on Ray (--engine ray)")
    hp = hparams_from_args(args)
    result = embed(
        args.data,
        args.out,
        backbone=hp.backbone,
        tta=hp.tta,
        ray=_ray_options(args),
        shard_size=args.shard_size,
        weights=args.weights,
        quiet=args.quiet,
    )
    print_failures(result.failures)
    kept = f", {result.skipped} already there" if result.skipped else ""
    out.print(
        f"Embedded {result.images - len(result.failures)} of {result.images} images into [bold]{result.out}[/] "
        f"({result.shards} shards: {result.written} written{kept}) in {result.seconds:.1f} s"
    )
    return 0


def cmd_report(args) -> int:
    """`headstart report`: the figures, per_class.csv and report.html of a saved model."""
    from ..classifier import Classifier

    clf = Classifier.load(args.model, weights=args.weights, engine=args.engine)
    report = clf.report(args.out or args.model, data=args.data, quiet=args.quiet)
    out.print(f"Report: [bold]{report.path}[/]")
    for name, path in report.files.items():
        if name != "report":
            out.print(f"  {path}")
    return 0


def cmd_evaluate(args) -> int:
    """`headstart evaluate`: metrics of a saved model on a labelled folder (or its held-out split)."""
    from ..classifier import Classifier
    from ..evaluation.console import evaluation_view, print_notes, print_skipped

    clf = Classifier.load(args.model, weights=args.weights, engine=args.engine)
    result = clf.evaluate(args.data, quiet=args.quiet)
    print_skipped(err, result.failures)
    print_notes(err, result.notes)
    out.print(evaluation_view(result.metrics, f"Evaluation of {args.model} on {result.root} ({result.split})"))
    return 0


def cmd_predict(args) -> int:
    """`headstart predict`: labels for image files, folders and globs, as a table, CSV, JSONL or a file."""
    from ..classifier import load
    from ..inference.predictor import Predictions

    predictor = load(args.model, weights=args.weights, engine=_engine(args))  # a bundle, or an exported ONNX file
    show = events(args) if args.format == "table" or args.out else None
    if args.engine == "ray":
        from ..distributed.predict import predict_on_ray

        chunks = predict_on_ray(predictor, args.paths, _ray_options(args), events(args))
    else:
        chunks = iter([predictor.predict(args.paths, on_event=show)])
    if args.out:
        return _predict_to_file(args, predictor.classes, chunks)
    result = Predictions.joined(predictor.classes, chunks)
    if not len(result):
        _nothing_to_label(result.failures)
    print_failures(result.failures, result.notes)
    classes = predictor.classes
    if args.format == "csv":
        result.write_csv(sys.stdout)
    elif args.format == "jsonl":
        result.write_jsonl(sys.stdout, args.top_k)
    elif len(result):
        k = min(args.top_k, len(classes))
        table = Table()
        table.add_column("image")
        for i in range(k):
            table.add_column(f"#{i + 1}")
        for p in result:
            table.add_row(
                escape(printable(str(p.path))), *(escape(f"{printable(label)} {prob:.1%}") for label, prob in p.top(k))
            )
        out.print(table)
    return 0


def _predict_to_file(args, classes: list[str], chunks) -> int:
    from ..inference.prediction_file import PredictionFile

    failures, notes = {}, {}
    with PredictionFile(args.out, classes, args.top_k, overwrite=args.force) as file:
        for chunk in chunks:
            file.write(chunk)
            failures |= chunk.failures
            notes |= chunk.notes
        if not file.rows:
            _nothing_to_label(failures)
    print_failures(failures, notes)
    out.print(f"{file.rows} predictions written to [bold]{escape(printable(args.out))}[/]")
    return 0


def _nothing_to_label(failures: dict) -> None:
    path, reason = next(iter(failures.items()), ("", "no images given"))
    others = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
    raise HeadstartError(f"nothing to label: {printable(str(path))}: {reason}{others}")


def print_failures(failures: dict, notes: dict | None = None) -> None:
    """One line per input left out, with the reason, and one per input used despite a decoder warning."""
    for path, reason in failures.items():
        err.print(f"skipped {printable(str(path))}: {reason}", markup=False, highlight=False)
    for path, note in (notes or {}).items():
        err.print(f"note {printable(str(path))}: {note}", markup=False, highlight=False)


def cmd_export(args) -> int:
    """`headstart export`: one file per format, each verified."""
    from ..classifier import Classifier

    clf = Classifier.load(args.model, weights=args.weights, engine=args.engine)
    for fmt in args.format:
        result = clf.export(
            fmt,
            args.out if len(args.format) == 1 else None,
            overwrite=args.force,
            data=args.data,
            on_event=events(args),
        )
        out.print(f"[green]exported[/] {result}")
    return 0


def cmd_compare(args) -> int:
    """`headstart compare`: every candidate backbone on one split, and a recommendation."""
    import json

    from ..training.compare import compare

    hp = hparams_from_args(args)
    backbones = _names(args.backbones)
    result = compare(
        args.data,
        backbones,
        hp,
        on_event=events(args) if args.format == "table" else None,
        quiet=True,
        tta=_names(args.tta_modes),
        budget=hp.budget,
    )
    if args.format == "json":
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    table = Table(title=f"{escape(printable(result.data))}: accuracy on {result.images} held-out {result.split} images")
    for column in ("backbone", "accuracy", "95% interval", "macro F1", "ms/image", "MB", "head s", "Pareto"):
        table.add_column(column, justify="left" if column == "backbone" else "right", no_wrap=True)
    for c in result.candidates:
        table.add_row(
            c.label,
            f"{c.accuracy:.1%}",
            f"{c.low:.1%}–{c.high:.1%}",
            f"{c.macro_f1:.3f}",
            f"{c.latency_ms:.1f}",
            f"{c.size_mb:.1f}",
            f"{c.train_s:.1f}",
            "*" if c.pareto else "",
        )
    out.print(table)
    if result.skipped:
        out.print(f"Not tried (over the {hp.budget:g} s budget): {', '.join(result.skipped)}")
    choice = next(c for c in result.candidates if (c.backbone, c.tta) == (result.recommended, result.recommended_tta))
    out.print(
        f"Recommended: [bold]{choice.label}[/], the fastest that the most accurate one does not beat "
        f"significantly (McNemar, paired on these images, p < 0.05).  "
        f"Train it: headstart train {escape(printable(result.data))} {choice.train_flags}"
    )
    return 0


def _names(text: str | None) -> list[str] | None:
    """'a, b,c' -> ['a', 'b', 'c']; None or blank -> None."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    return names or None
