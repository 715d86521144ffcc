"""Frozen-backbone features: images decoded on worker threads while the backbone (onnxruntime by
default) runs on batches; results cached on disk.

The cache key is the image's content hash plus the backbone, its weights and the preprocessing,
so renaming or moving files costs nothing and a changed recipe never reuses stale features.
Mirror-image views (test-time augmentation) and each member of a feature ensemble are cached
apart, so switching either on or off, or trying another ensemble, reuses what is there.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..backbones import BackboneSpec, EnsembleSpec
from ..data.images import DECODE_VERSION
from ..errors import HeadstartError
from ..events import EventBus
from ..fsutil import cache_root
from ..options import check_engine, check_tta
from ..preprocessing import Preprocessing
from .cache import FeatureCache, SplitCache
from .pipeline import Batch, Transform, batched_inference
from .runtime import cached_onnx, cached_session, numpy_state, state_fingerprint

if TYPE_CHECKING:
    from torch import nn

    from .graph import ModelGraph

# torch loads only to build a network: running a cached ONNX graph needs onnxruntime and numpy alone.


@dataclass
class Extraction:
    """Features of the readable images, in input order, and why the others were left out."""

    features: np.ndarray  # (n_ok, feature_dim) float32
    ok: list[int]  # indices into the input paths
    failures: dict[Path, str] = field(default_factory=dict)
    hashes: list[str] = field(default_factory=list)  # content sha256 of each ok image
    computed: int = 0  # images that went through the backbone (the rest came from the cache)
    notes: dict[Path, str] = field(default_factory=dict)  # used, though the decoder warned (decoded this run)

    @classmethod
    def of(cls, batch: Batch) -> Extraction:
        """A pipeline batch whose outputs are backbone features."""
        return cls(batch.outputs, batch.ok, batch.failures, batch.hashes, batch.computed, batch.notes)

    @classmethod
    def mean(cls, views: Sequence[Extraction]) -> Extraction:
        """Views of the same paths (an image and its mirror image) as one: the images every view
        read, their features averaged."""
        ok = sorted(set.intersection(*(set(v.ok) for v in views)))
        rows = []
        for view in views:
            row_of = {i: r for r, i in enumerate(view.ok)}
            rows.append([row_of[i] for i in ok])
        return cls(
            np.mean([v.features[r] for v, r in zip(views, rows)], axis=0).astype(np.float32),
            ok,
            {path: why for v in views for path, why in v.failures.items()},
            [views[0].hashes[r] for r in rows[0]],
            max(v.computed for v in views),
            {path: note for v in views for path, note in v.notes.items()},
        )


class FeatureExtractor:
    """Images -> backbone features, with onnxruntime (default) or eager PyTorch.

    `backbone` is the network to run: the spec's pretrained one unless a fine-tuned copy is given
    (as a module, or as its numpy state dict: then built only if its ONNX graph is not cached).
    `tta="flip"` gives the mean of each image's and its mirror image's features.
    Build one with `feature_extractor`, which picks the class the spec needs.
    """

    def __init__(
        self,
        spec: BackboneSpec,
        weights: str | Path | None = None,
        backbone: nn.Module | dict[str, np.ndarray] | None = None,
        engine: str = "auto",
        preprocessing: Preprocessing | None = None,
        cache_dir: Path | None = None,
        tta: str = "none",
    ):
        check_engine(engine)
        check_tta(tta)
        self.spec = spec
        self.tta = tta
        self.preprocessing = preprocessing or spec.preprocessing
        self.cache_root = Path(cache_dir) if cache_dir else cache_root()
        self._weights = weights
        self._backbone = backbone.eval() if hasattr(backbone, "eval") else None
        self._tuned_state = numpy_state(backbone) if backbone is not None and self._backbone is None else None
        # Pretrained: the weights file's hash; fine-tuned: a hash of the tuned tensors.
        weights_sha = spec.weights.sha256 if backbone is None else state_fingerprint(backbone)
        self.model_id = f"{spec.name}-{weights_sha[:16]}"
        self.engine = engine
        self._sessions: dict = {}  # onnxruntime session per test-time augmentation

    @property
    def cache_key(self) -> str:
        """The recipe's key: backbone, weights, preprocessing and how images are decoded."""
        return f"{self.model_id}-{self.preprocessing.fingerprint}-d{DECODE_VERSION}"

    def cache(self, tag: str = "") -> FeatureCache | None:
        """The feature cache of this recipe (None if unusable); `tag` names a variant (an augmented view)."""
        return FeatureCache.open(self.cache_root, self.cache_key + tag, self.spec.feature_dim)

    @property
    def backbone(self) -> nn.Module:
        """The network, built (and its weights loaded) on first use."""
        if self._backbone is None and self._tuned_state is not None:
            import torch

            network = self.spec.build()
            network.load_state_dict({k: torch.from_numpy(v) for k, v in self._tuned_state.items()})
            self._backbone = network.eval()
        elif self._backbone is None:
            self._backbone = self.spec.create(self._weights)
        return self._backbone

    def graph(self, tta: str | None = None) -> ModelGraph:
        """uint8 crops -> features, as one network (with this extractor's test-time augmentation
        unless `tta` says otherwise)."""
        from .graph import ModelGraph

        return ModelGraph.features(self.backbone, self.preprocessing, self.tta if tta is None else tta)

    def _onnx(self, tta: str) -> tuple:
        """cached_onnx / cached_session arguments of the graph with test-time augmentation `tta`."""
        suffix = "" if tta == "none" else f"-{tta}"
        name = f"{self.cache_key}{suffix}-u8.onnx"
        return name, functools.partial(self.graph, tta), self.preprocessing.image_size, "features", self.cache_root

    def onnx_file(self, tta: str = "none") -> Path:
        """The ONNX file of `graph(tta)` (exported to the cache once): what remote workers run."""
        return cached_onnx(*self._onnx(tta))

    def _onnx_session(self, tta: str):
        if tta not in self._sessions:
            self._sessions[tta] = cached_session(*self._onnx(tta))
        return self._sessions[tta]

    def release(self) -> None:
        """Free the onnxruntime sessions and their memory; the next use builds them again (~40 ms)."""
        self._sessions.clear()

    def resolved_engine(self) -> str:
        """The runtime `engine` means here: auto is onnxruntime when it is installed."""
        if self.engine != "auto":
            return self.engine
        return "onnxruntime" if importlib.util.find_spec("onnxruntime") else "torch"

    def embed(self, batch: np.ndarray, tta: str | None = None) -> np.ndarray:
        """Cropped uint8 images (N, H, W, 3) -> features (N, feature_dim) float32."""
        tta = self.tta if tta is None else tta
        if self.resolved_engine() == "onnxruntime":
            return self._onnx_session(tta).run(None, {"images": batch})[0]
        import torch

        with torch.inference_mode():
            return self.graph(tta)(torch.from_numpy(batch)).numpy()

    def extract(
        self,
        paths: Sequence[Path],
        use_cache: bool = True,
        events: EventBus | None = None,
        stage: str = "extract",
        description: str = "Extracting features",
        transform: Transform | None = None,
        cache_tag: str = "",
    ) -> Extraction:
        """Features of `paths` (cached unless `use_cache` is False). `transform` replaces the plain
        crop (a training augmentation, never mirrored for test time); its features are cached
        apart, under `cache_tag`."""

        def view(transform, tag, description):  # one view per image, each cached apart
            cache = self.cache(tag) if use_cache else None
            embed = functools.partial(self.embed, tta="none")
            dim = self.spec.feature_dim
            return Extraction.of(
                batched_inference(paths, self.preprocessing, embed, dim, cache, events, stage, description, transform)
            )

        plain = view(transform, cache_tag, description)
        if self.tta == "none" or transform is not None:
            return plain
        mirrored = view(mirror(self.preprocessing), cache_tag + "-flip", f"{description} (mirror images)")
        return Extraction.mean([plain, mirrored])


class EnsembleExtractor(FeatureExtractor):
    """A feature ensemble's extractor: images decoded once and run through the whole ensemble graph,
    each member's share of the features cached under that member's own key (see `SplitCache`)."""

    @functools.cached_property
    def members(self) -> list[FeatureExtractor]:
        """Each member alone on the shared crop: what names (and holds) its cache."""
        return [
            FeatureExtractor(member, engine=self.engine, cache_dir=self.cache_root)
            for member in self.spec.member_specs(self.preprocessing)
        ]

    def cache(self, tag: str = "") -> SplitCache | None:
        """The members' caches, as one."""
        parts = [member.cache(tag) for member in self.members]
        return None if None in parts else SplitCache(parts)


def feature_extractor(
    spec: BackboneSpec,
    weights: str | Path | None = None,
    backbone: nn.Module | dict[str, np.ndarray] | None = None,
    engine: str = "auto",
    preprocessing: Preprocessing | None = None,
    cache_dir: Path | None = None,
    tta: str = "none",
) -> FeatureExtractor:
    """The extractor `spec` needs (see `FeatureExtractor` for the arguments)."""
    if not isinstance(spec, EnsembleSpec):
        return FeatureExtractor(spec, weights, backbone, engine, preprocessing, cache_dir, tta)
    if backbone is not None:
        raise HeadstartError(f"{spec.name}: a feature ensemble is never fine-tuned")
    return EnsembleExtractor(spec, weights, None, engine, preprocessing, cache_dir, tta)


def mirror(preprocessing: Preprocessing) -> Transform:
    """The mirror image of the plain crop: exactly what the graph's flip sees."""
    return lambda image, _: np.ascontiguousarray(preprocessing(image)[:, ::-1])
