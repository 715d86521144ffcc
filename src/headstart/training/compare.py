"""`headstart compare`: a head on every installed backbone and ensemble, with and without flip
test-time augmentation, on one split, side by side.

No backbone wins everywhere (on hymenoptera here MobileNetV2 beat EfficientNet-Lite0 and Lite1/Lite2
beat both; bench/accuracy.py), so the choice is made per dataset, on held-out images. Every
candidate trains on the same split of the same images (grouped the same way), from cached
features, so a comparison costs one extraction per backbone and view and then seconds.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..backbones import BACKBONES, DEFAULT_BACKBONE, EnsembleSpec, get_backbone
from ..errors import HeadstartError
from ..evaluation.metrics import compute_metrics, wilson
from ..events import Subscriber
from ..hparams import HParams
from ..inference.features import feature_extractor
from ..inference.model import Model
from ..presets import ENSEMBLES
from .head import fit_head
from .run import DatasetFeatures, TrainingRun


@dataclass
class Candidate:
    """One backbone (with or without flip) measured on the comparison's held-out images."""

    backbone: str
    accuracy: float
    low: float  # Wilson 95% interval of the accuracy
    high: float
    macro_f1: float
    latency_ms: float  # one decoded image through backbone and head (median)
    size_mb: float  # float32 weights of backbone and head
    train_s: float  # the head's training, from cached features
    tta: str = "none"  # test-time augmentation
    correct: list[bool] = field(default_factory=list, repr=False)  # per held-out image, for paired tests
    pareto: bool = False  # no other candidate is both at least as accurate and at least as fast

    @property
    def label(self) -> str:
        """How tables name it."""
        return label(self.backbone, self.tta)

    @property
    def train_flags(self) -> str:
        """The `headstart train` flags that train this candidate."""
        return f"--backbone {self.backbone}" + ("" if self.tta == "none" else f" --tta {self.tta}")


@dataclass
class Comparison:
    """What `compare` measured, and which candidate it recommends."""

    data: str
    split: str  # where accuracy was measured
    images: int  # how many images that split holds
    candidates: list[Candidate]
    recommended: str  # the recommended candidate's backbone ...
    recommended_tta: str = "none"  # ... and test-time augmentation
    skipped: list[str] = field(default_factory=list)  # candidates not tried: the budget ran out

    def to_dict(self) -> dict:
        """JSON-shaped (`headstart compare --format json`)."""
        out = asdict(self)
        for candidate in out["candidates"]:
            del candidate["correct"]
        return out


def label(backbone: str, tta: str) -> str:
    """How a candidate is named in tables: "efficientnet_lite2 +flip"."""
    return backbone if tta == "none" else f"{backbone} +{tta}"


def mark_pareto(candidates: list[Candidate]) -> None:
    """Mark the candidates no other beats on both accuracy and latency."""
    for c in candidates:
        c.pareto = not any(
            o is not c
            and o.accuracy >= c.accuracy
            and o.latency_ms <= c.latency_ms
            and (o.accuracy > c.accuracy or o.latency_ms < c.latency_ms)
            for o in candidates
        )


def mcnemar(a: np.ndarray, b: np.ndarray) -> float:
    """Exact two-sided McNemar p-value of two classifiers right/wrong on the same images: only the
    images one gets right and the other wrong count, so it sees far smaller differences than two
    separate intervals do."""
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n, k = only_a + only_b, min(only_a, only_b)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0


def recommend(candidates: list[Candidate], alpha: float = 0.05) -> Candidate:
    """The fastest candidate that the most accurate one does not beat significantly (McNemar,
    paired on the same held-out images): a difference those images cannot tell from chance is
    not worth the extra latency."""
    best = max(candidates, key=lambda c: (c.accuracy, -c.latency_ms))
    return min(
        (c for c in candidates if mcnemar(np.asarray(best.correct), np.asarray(c.correct)) >= alpha),
        key=lambda c: c.latency_ms,
    )


def default_backbones() -> list[str]:
    """Every installed backbone, then the installed ensembles `headstart compare` tries."""
    singles = [name for name, spec in BACKBONES.items() if spec.weights_installed()]
    return singles + [name for name in ENSEMBLES if get_backbone(name).weights_installed()]


def compare(
    data: str | Path,
    backbones: list[str] | None = None,
    hparams: HParams | None = None,
    on_event: Subscriber | None = None,
    quiet: bool = False,
    tta: list[str] | None = None,
    budget: float | None = None,
) -> Comparison:
    """Train the default head on each candidate on one split of `data`, and measure each on its
    held-out images. Candidates are `backbones` (default: `default_backbones()`) × `tta` modes
    (default: none, then flip unless hparams.flip is off), cheapest first; with a `budget` in
    seconds, no candidate starts after it is spent (the first always runs)."""
    hp = hparams or HParams()
    modes = tta or (["none", "flip"] if hp.flip else ["none"])
    pairs = [(name, mode) for mode in modes for name in backbones or default_backbones()]
    if not pairs:
        raise HeadstartError("no backbone weights installed: see `headstart backbones`")
    for name, _ in pairs:
        get_backbone(name).weights_path()  # unknown or not installed: one line, before any work
    started = time.perf_counter()
    first, first_tta = pairs[0]
    run = TrainingRun(data, hp.replace(backbone=first, tta=first_tta, fine_tune=0), on_event=on_event, quiet=quiet)
    run.group()  # scan, extract (the first candidate) and split, grouped as `hp` says
    dataset = run.dataset
    split = "test" if dataset.split("test") else "val"
    candidates, skipped = [], []
    for name, mode in pairs:
        if candidates and budget is not None and time.perf_counter() - started > budget:
            skipped.append(label(name, mode))
            continue
        spec = get_backbone(name)
        extractor = run.extractor if (name, mode) == pairs[0] else feature_extractor(spec, tta=mode)
        features = run.features if (name, mode) == pairs[0] else DatasetFeatures.extract(extractor, dataset, run.events)
        by_split = features.by_split(dataset)
        (x_train, y_train), (x_val, y_val) = by_split["train"], by_split.get("val", (None, None))
        head, history = fit_head(x_train, y_train, x_val, y_val, len(dataset.classes), hp.replace(backbone=name))
        model = Model(spec, head, dataset.classes, tta=mode, extractor=extractor)
        x_eval, y_eval = by_split[split]
        candidates.append(_measure(model, x_eval, y_eval, history.seconds))
    mark_pareto(candidates)
    choice = recommend(candidates)
    return Comparison(str(data), split, len(y_eval), candidates, choice.backbone, choice.tta, skipped)


def resolve_backbone(data: str | Path, hparams: HParams, on_event: Subscriber | None = None) -> HParams:
    """`hparams` with backbone "auto" replaced by what `compare` recommends on `data` with these
    settings, within `hparams.budget` seconds (features stay cached: the chosen candidate's are
    not extracted twice)."""
    if hparams.backbone != "auto":
        return hparams
    base = hparams.replace(backbone=DEFAULT_BACKBONE)
    # Ensembles are never fine-tuned: with --fine-tune the choice is among single backbones.
    singles = None
    if hparams.fine_tune:
        singles = [name for name in default_backbones() if not isinstance(get_backbone(name), EnsembleSpec)]
    choice = compare(data, singles, base, on_event, budget=hparams.budget)
    return hparams.replace(backbone=choice.recommended, tta=choice.recommended_tta)


def _measure(model: Model, x_eval: np.ndarray, y_eval: np.ndarray, train_s: float) -> Candidate:
    probabilities = model.predict_proba(x_eval)
    metrics = compute_metrics(y_eval, probabilities, model.classes)
    low, high = wilson(round(metrics.accuracy * len(y_eval)), len(y_eval))
    size = model.preprocessing.image_size
    crop = np.random.default_rng(0).integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    model.predict_arrays(crop)  # warm up: the first run builds the session
    times = []
    for _ in range(20):
        started = time.perf_counter()
        model.predict_arrays(crop)
        times.append(time.perf_counter() - started)
    parameters = sum(p.numel() for p in model.extractor.backbone.parameters()) + model.head.num_parameters
    return Candidate(
        backbone=model.spec.name,
        accuracy=metrics.accuracy,
        low=low,
        high=high,
        macro_f1=metrics.macro_f1,
        latency_ms=1000 * float(np.median(times)),
        size_mb=parameters * 4 / 1e6,
        train_s=train_s,
        tta=model.tta,
        correct=(probabilities.argmax(1) == y_eval).tolist(),
    )
