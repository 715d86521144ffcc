"""Feature ensembles: several backbones on one crop, their pooled features side by side.

`efficientnet_lite1+efficientnet_lite2` is a backbone like any other to the rest of headstart:
one uint8 crop in (the largest member's), one feature vector out, so heads, bundles, caches and
exports need nothing new. Inside, each member resizes the crop to its own resolution and
normalises it its own way. Members are frozen: an ensemble is never fine-tuned.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import HeadstartError
from ..preprocessing import Preprocessing
from .spec import BackboneSpec, architecture
from .weights import WeightsSource

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class EnsembleSpec(BackboneSpec):
    """A `BackboneSpec` whose network is an `Ensemble` of registered backbones.

    Its preprocessing is the largest member's crop with no normalisation (pixels / 255): the
    members normalise for themselves inside the graph.
    """

    members: tuple[BackboneSpec, ...] = ()

    @classmethod
    def of(cls, members: Sequence[BackboneSpec], crop: Preprocessing | None = None) -> EnsembleSpec:
        """The ensemble of `members` on `crop`'s geometry (default: the largest member's)."""
        members = tuple(members)
        names = [m.name for m in members]
        if len(set(names)) != len(names):
            raise HeadstartError(f"backbone {'+'.join(names)!r} lists a member twice")
        crop = crop or max((m.preprocessing for m in members), key=lambda p: p.image_size)
        preprocessing = replace(crop, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
        digest = hashlib.sha256(" ".join(m.weights.sha256 for m in members).encode()).hexdigest()
        return cls(
            name="+".join(names),
            description=f"feature ensemble of {', '.join(names)} on one {crop.image_size} px crop",
            build=architecture(".networks.ensemble", "assemble", members, preprocessing.image_size),
            weights=WeightsSource(
                sha256=digest, hint=" && ".join(dict.fromkeys(m.weights.install_hint for m in members))
            ),
            preprocessing=preprocessing,
            feature_dim=sum(m.feature_dim for m in members),
            num_blocks=1,
            parameters=sum(m.parameters for m in members),
            members=members,
        )

    def weights_path(self, override: str | Path | None = None) -> Path:
        """Every member's verified weights (the first member's path is returned)."""
        if override is not None:
            raise HeadstartError(
                f"--weights names one file, but {self.name} is an ensemble: each member loads its installed weights"
            )
        return [m.weights_path() for m in self.members][0]

    def weights_installed(self) -> bool:
        """Whether every member's weights are installed and verified."""
        return all(m.weights_installed() for m in self.members)

    def create(self, weights: str | Path | None = None, pretrained: bool = True) -> nn.Module:
        """The members' pretrained networks side by side, in eval mode."""
        if pretrained:
            self.weights_path(weights)
        from .networks.ensemble import assemble

        networks = [m.create() if pretrained else m.build() for m in self.members]
        return assemble(self.members, self.preprocessing.image_size, networks).eval()

    def member_specs(self, crop: Preprocessing | None = None) -> list[EnsembleSpec]:
        """Each member alone on this ensemble's crop: what extracts (and caches) its share of the features."""
        return [EnsembleSpec.of([m], crop or self.preprocessing) for m in self.members]
