"""Command-line flags generated from `HParams`' fields: the flag, help, group, parser and choices
each field declares (`headstart.hparams.knob` and its annotation). `train` gets every field;
`compare`, `embed` and `imagenet` the few they use, the same way."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from dataclasses import fields

from ..hparams import MODEL, HParams, choices, cli_flag
from ..presets import PRESETS


def _argument_type(parse):
    """Wrap a parser so that its ValueError becomes argparse's one-line usage error."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def add_hparams_arguments(parser: argparse.ArgumentParser, names: Iterable[str] | None = None) -> None:
    """One flag per `HParams` field (or per field in `names`), in the group the field declares.

    A flag not given leaves no attribute (argparse.SUPPRESS), so `hparams_from_args` can tell it
    from a typed default, and a `--preset` from both.
    """
    wanted = None if names is None else set(names)
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(HParams):
        if wanted is not None and f.name not in wanted:
            continue
        cli = f.metadata["cli"]
        if cli["group"] not in groups:
            groups[cli["group"]] = parser.add_argument_group(cli["group"])
        group, flag = groups[cli["group"]], cli_flag(f)
        if isinstance(f.default, bool):
            action = "store_false" if f.default else "store_true"
            group.add_argument(flag, dest=f.name, action=action, default=argparse.SUPPRESS, help=cli["help"])
            continue
        kind = cli["type"] or type(f.default)
        default_text = "" if f.default in (None, ()) else f" (default {f.default})"
        group.add_argument(
            flag,
            dest=f.name,
            type=_argument_type(kind),
            default=argparse.SUPPRESS,
            choices=choices(f.name),
            metavar=cli["metavar"],
            help=cli["help"] + default_text.replace("%", "%%"),
        )
    if wanted is None:
        groups[MODEL].add_argument(
            "--preset",
            choices=tuple(PRESETS),
            help="a measured combination of the settings above (flags given as well win): "
            + "; ".join(f"{name}: {preset['summary']}" for name, preset in PRESETS.items()),
        )


def hparams_from_args(args: argparse.Namespace) -> HParams:
    """The settings of a parsed command line: the preset's (if any), then every flag given."""
    given = {f.name: getattr(args, f.name) for f in fields(HParams) if hasattr(args, f.name)}
    preset = getattr(args, "preset", None)
    if not preset:
        return HParams(**given)
    return HParams(flip=given.get("flip", True)).with_preset(preset).replace(**given)
