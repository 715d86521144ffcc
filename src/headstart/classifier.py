"""`Classifier`: one object that trains, predicts, evaluates, saves and loads; the CLI mirrors it."""

from __future__ import annotations

import copy
import glob
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torch import nn

from . import __version__
from .backbones import BackboneSpec, get_backbone
from .bundle import load_bundle, save_bundle
from .calibration import expected_calibration_error, fit_temperature, softmax
from .checkpoint import Checkpoints
from .data.dataset import Dataset, scan
from .data.images import is_image_path
from .data.remote import resolve_data
from .errors import HeadstartError
from .features import Extraction, FeatureExtractor
from .head import build_head
from .hparams import HParams
from .leakage import check_leakage, group_near_duplicates
from .metrics import Metrics, compute_metrics
from .preprocessing import Preprocessing
from .training import History, fit_head

PathLike = str | Path
INFO_KEYS = ("data", "leakage", "history", "stages", "evaluated_on", "metrics", "calibration", "splits", "timings", "created")


@dataclass
class Prediction:
    path: Path
    label: str
    probability: float
    probabilities: dict[str, float]

    def top(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probabilities.items(), key=lambda kv: -kv[1])[:k]


@dataclass
class Predictions:
    """Predictions in input order plus the inputs that could not be read, with reasons."""

    classes: list[str]
    items: list[Prediction]
    failures: dict[Path, str] = field(default_factory=dict)

    def __iter__(self):
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Prediction:
        return self.items[i]

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.items]

    @classmethod
    def from_probabilities(cls, classes: list[str], paths: list[Path], ok: list[int], probabilities: np.ndarray,
                           failures: dict[Path, str]) -> Predictions:
        """One Prediction per readable image (`ok` indexes `paths`, rows of `probabilities` follow it)."""
        items = []
        for i, p in zip(ok, probabilities):
            best = int(p.argmax())
            items.append(Prediction(paths[i], classes[best], float(p[best]), dict(zip(classes, map(float, p)))))
        return cls(list(classes), items, failures)


@dataclass
class LabelledFolder:
    root: Path
    split: str  # "test" / "val" of a pre-split folder, else "all"
    paths: list[Path]
    labels: np.ndarray  # label index (of the model) of each path
    skipped: dict[Path, str]


@dataclass
class Evaluation:
    metrics: Metrics
    split: str
    data: Path
    failures: dict[Path, str] = field(default_factory=dict)


def collect_images(inputs: Iterable[PathLike]) -> tuple[list[Path], dict[Path, str]]:
    """Expand files, folders (recursively, hidden files ignored) and glob patterns into image paths."""
    paths: list[Path] = []
    missing: dict[Path, str] = {}
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            paths += sorted(
                f for f in p.rglob("*")
                if f.is_file() and is_image_path(f) and not any(x.startswith(".") for x in f.relative_to(p).parts)
            )
        elif p.is_file():
            paths.append(p)
        elif any(ch in str(item) for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(str(p), recursive=True) if Path(m).is_file())
            paths += matches
            if not matches:
                missing[p] = "pattern matched no file"
        else:
            missing[p] = "no such file or folder"
    seen: set[Path] = set()
    unique = [p for p in paths if not (p in seen or seen.add(p))]
    return unique, missing


def environment() -> dict:
    import onnxruntime
    import PIL

    return {
        "headstart": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "onnxruntime": onnxruntime.__version__,
        "pillow": PIL.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }


class Classifier:
    """A trained image classifier: backbone spec + head + labels + preprocessing.

    Build one with `Classifier.train(folder)` (or `headstart.train`), or `Classifier.load(bundle)`.
    """

    def __init__(
        self,
        spec: BackboneSpec,
        head: nn.Sequential,
        classes: Sequence[str],
        hparams: HParams,
        preprocessing: Preprocessing | None = None,
        weights: PathLike | None = None,
        info: dict | None = None,
        engine: str = "auto",
        temperature: float = 1.0,
        backbone: nn.Module | None = None,
    ):
        self.spec = spec
        self.backbone = backbone.eval() if backbone is not None else None  # fine-tuned weights, else None (pretrained)
        self.temperature = float(temperature)  # softmax temperature (temperature scaling); 1 = none
        self.head = head.eval()
        self.classes = list(classes)
        self.hparams = hparams
        self.preprocessing = preprocessing or spec.preprocessing
        self.weights = weights
        self.info = info or {}
        self.engine = engine
        self._extractor: FeatureExtractor | None = None

    def __repr__(self) -> str:
        acc = self.info.get("metrics", {}).get("accuracy")
        tail = f", {self.info['evaluated_on']} accuracy={acc:.3f}" if acc is not None else ""
        return f"Classifier(backbone={self.spec.name!r}, classes={self.classes!r}{tail})"

    # -- training ---------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        data: PathLike,
        hparams: HParams | None = None,
        *,
        out: PathLike | None = None,
        weights: PathLike | None = None,
        engine: str = "auto",
        quiet: bool = False,
        resume: bool = False,
        fine_tune_options: dict | None = None,
        **overrides,
    ) -> Classifier:
        """Scan `data`, extract (cached) features, train the head, optionally fine-tune, evaluate
        on the test split (validation if there is none) and, if `out` is given, save the bundle."""
        hp = HParams.from_dict({**(hparams or HParams()).to_dict(), **overrides})
        started = time.perf_counter()
        spec = get_backbone(hp.backbone)
        spec.weights_path(weights)  # fail early, before scanning, if weights are missing
        dataset = scan(resolve_data(data, quiet=quiet), hp.val_fraction, hp.test_fraction, hp.seed, group_by=hp.group_by, quiet=quiet)
        extractor = FeatureExtractor(spec, weights, engine=engine)
        pretrained = _DatasetFeatures.extract(extractor, dataset, quiet)
        dataset.drop(pretrained.extraction.failures)
        if hp.group_by == "auto":
            dataset.regroup(pretrained.near_duplicate_groups(dataset, hp.near_duplicate_threshold))
        checkpoints = Checkpoints(out, hp, dataset, data, resume)
        head, history = _train_head(extractor, dataset, pretrained, hp, checkpoints, quiet)
        clf = cls(spec, head, dataset.classes, hp, weights=weights, engine=engine)
        clf._extractor = extractor
        fine_tune_history = clf._fine_tune(dataset, checkpoints, quiet, fine_tune_options) if hp.fine_tune else None
        final = pretrained if clf.backbone is None else _DatasetFeatures.extract(clf.extractor, dataset, quiet)
        clf.info = clf._describe(dataset, final.by_split(dataset), pretrained, history, fine_tune_history, started)
        if out is not None:
            clf.save(out)
            checkpoints.discard()
        return clf

    def _fine_tune(self, dataset: Dataset, checkpoints: Checkpoints, quiet: bool, options: dict | None) -> History:
        """Stage 2; keeps the fine-tuned backbone only if some epoch beat the stage-1 model."""
        from .finetune import fine_tune

        train, val = dataset.split("train"), dataset.split("val")
        if not val:
            raise HeadstartError("fine-tuning needs a validation split for early stopping; set --val-fraction > 0")
        with checkpoints.interruptible():
            backbone, self.head, history = fine_tune(
                copy.deepcopy(self.extractor.backbone), self.head, self.preprocessing,
                ([s.path for s in train], np.array([s.label for s in train])),
                ([s.path for s in val], np.array([s.label for s in val])),
                self.hparams, augmentation=self.hparams.augmentation(), quiet=quiet,
                on_epoch=checkpoints.stage2_epoch, resume=(checkpoints.saved or {}).get("stage2"), **(options or {}),
            )
        if history.best_epoch > 0:
            self.backbone, self._extractor = backbone, None
        return history

    def _describe(self, dataset, features, pretrained, history, fine_tune_history, started) -> dict:
        """Calibrate (if asked) and measure; everything that goes into model.json besides the weights."""
        hp = self.hparams
        eval_split = "test" if "test" in features else "val" if "val" in features else "train"
        x_eval, y_eval = features[eval_split]
        calibration = {"ece_uncalibrated": expected_calibration_error(y_eval, self.predict_features(x_eval))}
        if hp.calibrate and "val" in features:
            self.temperature = fit_temperature(self.logits(features["val"][0]), features["val"][1])
        calibration |= {"temperature": self.temperature, "ece": expected_calibration_error(y_eval, self.predict_features(x_eval))}
        # Leakage is judged on the pretrained features: fine-tuned ones were fitted to these very images.
        leakage = pretrained.leakage(dataset, hp, history)
        best_val = lambda h: h.val_accuracy[h.best_epoch - 1] if h.best_epoch else h.start_val_accuracy  # noqa: E731
        stages = {"head": {"history": history.to_dict(), "val_accuracy": best_val(history)}}
        if fine_tune_history is not None:
            stages["fine_tune"] = {"history": fine_tune_history.to_dict(), "blocks": hp.fine_tune,
                                   "val_accuracy": best_val(fine_tune_history), "kept_stage1": fine_tune_history.best_epoch == 0}
        return {
            "data": _dataset_summary(dataset),
            "leakage": leakage.to_dict() | {"message": leakage.message()},
            "history": history.to_dict(),
            "stages": stages,
            "evaluated_on": eval_split,
            "metrics": compute_metrics(y_eval, self.predict_features(x_eval), dataset.classes).to_dict(),
            "calibration": calibration,
            "splits": {split: compute_metrics(y, self.predict_features(x), dataset.classes).to_dict() for split, (x, y) in features.items()},
            "timings": {
                "feature_extraction_s": round(pretrained.seconds, 3),
                "images_computed": pretrained.extraction.computed,
                "images_from_cache": len(pretrained.extraction.ok) - pretrained.extraction.computed,
                "head_training_s": round(history.seconds, 3),
                "total_s": round(time.perf_counter() - started, 3),
            },
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }

    @property
    def metrics(self) -> Metrics | None:
        m = self.info.get("metrics")
        if not m:
            return None
        return Metrics(
            classes=self.classes,
            accuracy=m["accuracy"],
            precision=[m["per_class"][c]["precision"] for c in self.classes],
            recall=[m["per_class"][c]["recall"] for c in self.classes],
            f1=[m["per_class"][c]["f1"] for c in self.classes],
            support=[m["per_class"][c]["support"] for c in self.classes],
            confusion=m["confusion"],
            top_k_accuracy={int(k): v for k, v in m["top_k_accuracy"].items()},
            count=m["count"],
        )

    @property
    def history(self) -> History:
        return History(**self.info.get("history", {}))

    @property
    def leakage(self) -> dict:
        """Near-duplicates across and within splits, exact duplicates, and whether validation leaks."""
        return self.info.get("leakage", {})

    @property
    def skipped(self) -> list[dict]:
        return self.info.get("data", {}).get("skipped", [])

    # -- inference --------------------------------------------------------------------------
    @property
    def extractor(self) -> FeatureExtractor:
        if self._extractor is None:
            self._extractor = FeatureExtractor(
                self.spec, self.weights, backbone=self.backbone, engine=self.engine, preprocessing=self.preprocessing
            )
        return self._extractor

    def logits(self, features: np.ndarray) -> np.ndarray:
        """Head outputs before the softmax, (N, num_classes), from backbone features (N, feature_dim)."""
        with torch.inference_mode():
            return self.head(torch.from_numpy(np.asarray(features, np.float32))).numpy()

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (N, num_classes) from backbone features (N, feature_dim)."""
        return softmax(self.logits(features), self.temperature)

    def predict(self, inputs: PathLike | Iterable[PathLike], quiet: bool = True) -> Predictions:
        """Predict files, folders (recursively) or glob patterns; unreadable files are reported."""
        if isinstance(inputs, (str, Path)):
            inputs = [inputs]
        paths, failures = collect_images(inputs)
        extraction = self.extractor.extract(paths, use_cache=False, description="Predicting", quiet=quiet)
        failures.update(extraction.failures)
        return Predictions.from_probabilities(self.classes, paths, extraction.ok, self.predict_features(extraction.features), failures)

    def evaluate(self, data: PathLike, quiet: bool = True) -> Evaluation:
        """Metrics on a labelled folder: its test split if pre-split (else val), else all its images."""
        folder = self.labelled_folder(data, quiet)
        extraction = self.extractor.extract(folder.paths, description="Evaluating", quiet=quiet)
        metrics = compute_metrics(folder.labels[extraction.ok], self.predict_features(extraction.features), self.classes)
        return Evaluation(metrics, folder.split, folder.root, folder.skipped | extraction.failures)

    def labelled_folder(self, data: PathLike, quiet: bool = True) -> LabelledFolder:
        """The images of a labelled folder to evaluate on, with label indices of this model."""
        dataset = scan(resolve_data(data, quiet=quiet), val_fraction=0.0, test_fraction=0.0, quiet=quiet)
        split = next((s for s in ("test", "val") if dataset.presplit and dataset.split(s)), "train")
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = [c for c in dataset.classes if c not in index]
        if unknown:
            raise HeadstartError(f"{dataset.root}: class {unknown[0]!r} is not one of the model's labels {self.classes}")
        samples = dataset.split(split)
        return LabelledFolder(
            root=dataset.root,
            split=split if dataset.presplit else "all",
            paths=[s.path for s in samples],
            labels=np.array([index[dataset.classes[s.label]] for s in samples], dtype=np.int64),
            skipped={Path(s.path): s.reason for s in dataset.skipped},
        )

    # -- the data it was trained on ---------------------------------------------------------
    def _data_root(self, data: PathLike | None) -> Path:
        root = Path(data).expanduser() if data else Path(self.info.get("data", {}).get("root", ""))
        if not data and not self.info.get("data"):
            raise HeadstartError("this model records no training data; pass --data DIR")
        if not root.is_dir():
            raise HeadstartError(f"{root}: the training images are not there any more; pass --data DIR")
        return root

    def reference_images(self, data: PathLike | None = None) -> tuple[list[Path], list[int], str]:
        """The held-out images recorded at training (test split, else val) and their label indices."""
        root = self._data_root(data)
        held_out = self.info["data"].get("held_out", {})
        split = "test" if held_out.get("test") else "val"
        rows = [(root / rel, self.classes.index(label)) for rel, label in held_out.get(split, []) if (root / rel).exists()]
        return [p for p, _ in rows], [y for _, y in rows], split

    def training_images(self, data: PathLike | None = None, limit: int = 256) -> list[Path]:
        """Up to `limit` training images (none held out), spread over the classes."""
        root = self._data_root(data)
        held = {root / rel for rows in self.info["data"].get("held_out", {}).values() for rel, _ in rows}
        dataset = scan(root, 0.0, 0.0)
        pool = [s.path for s in (dataset.split("train") if dataset.presplit else dataset.samples) if s.path not in held]
        return pool[:: max(1, len(pool) // limit)][:limit]

    # -- looking at it ------------------------------------------------------------------------
    def report(self, directory: PathLike | None = None, data: PathLike | None = None):
        """Write curves, confusion matrix, mistakes, calibration, embedding, per_class.csv and a
        self-contained report.html into `directory` (a temporary folder if None); in a notebook
        the result displays inline."""
        import tempfile

        from .report import write_report

        return write_report(self, directory or tempfile.mkdtemp(prefix="headstart-report-"), data)

    def plot_curves(self):
        from .report import plot_curves

        return plot_curves(self.info.get("history", {}), self.info.get("stages", {}).get("fine_tune", {}).get("history"))

    def plot_confusion(self, data: PathLike | None = None):
        from .report import collect, plot_confusion

        return plot_confusion(collect(self, data).metrics if data else self.metrics)

    def plot_mistakes(self, data: PathLike | None = None):
        from .report import collect, plot_mistakes

        return plot_mistakes(collect(self, data), self.classes, self.preprocessing)

    def plot_calibration(self, data: PathLike | None = None):
        from .report import collect, plot_calibration

        ev = collect(self, data)
        return plot_calibration(ev.y_true, ev.probabilities, ev.uncalibrated)

    def plot_embedding(self, data: PathLike | None = None):
        from .report import collect, plot_embedding

        return plot_embedding(collect(self, data), self.classes)

    def export(self, format: str = "onnx", path: PathLike | None = None, overwrite: bool = False, data: PathLike | None = None):
        """Write an ONNX / ONNX-int8 / TFLite / torch.export file, verified against this model."""
        from .export import export

        return export(self, format, path, overwrite=overwrite, data=data)

    # -- persistence ------------------------------------------------------------------------
    def save(self, directory: PathLike) -> Path:
        meta = {
            "labels": self.classes,
            "backbone": {"name": self.spec.name, "weights_sha256": self.spec.weights.sha256, "feature_dim": self.spec.feature_dim},
            "preprocessing": self.preprocessing.to_dict(),
            "head": {"hidden": list(self.hparams.hidden), "dropout": self.hparams.dropout},
            "hparams": self.hparams.to_dict(),
            **self.info,
            "calibration": {**self.info.get("calibration", {}), "temperature": self.temperature},
            "environment": environment(),
        }
        tensors = {f"head.{k}": v for k, v in self.head.state_dict().items()}
        if self.backbone is not None:  # fine-tuned: the whole backbone travels with the bundle
            tensors |= {f"backbone.{k}": v for k, v in self.backbone.state_dict().items()}
        return save_bundle(directory, tensors, meta)

    @classmethod
    def load(cls, directory: PathLike, weights: PathLike | None = None, engine: str = "auto") -> Classifier:
        tensors, meta = load_bundle(directory)
        where = Path(directory)
        try:
            spec = get_backbone(meta["backbone"]["name"])
            classes = [str(c) for c in meta["labels"]]
            hp = HParams.from_dict(meta.get("hparams", {}))
            preprocessing = Preprocessing.from_dict(meta["preprocessing"])
            hidden = tuple(int(h) for h in meta["head"]["hidden"])
            dropout = float(meta["head"]["dropout"])
            recorded_sha = meta["backbone"]["weights_sha256"]
        except (KeyError, TypeError, ValueError) as e:
            raise HeadstartError(f"{where}: incomplete model.json ({type(e).__name__}: {e})") from None
        if recorded_sha != spec.weights.sha256:
            raise HeadstartError(f"{where}: trained on other {spec.name} weights (sha256 {recorded_sha[:12]}…) than headstart uses")
        if len(classes) < 2 or len(set(classes)) != len(classes):
            raise HeadstartError(f"{where}: labels in model.json are missing or repeated")
        head = build_head(spec.feature_dim, len(classes), hidden, dropout)
        state = {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")}
        expected = {k: tuple(v.shape) for k, v in head.state_dict().items()}
        found = {k: tuple(v.shape) for k, v in state.items()}
        if expected != found:
            raise HeadstartError(
                f"{where}: model.safetensors does not match model.json "
                f"({len(classes)} labels, head {list(hidden) or 'linear'}); the bundle was altered or mixed up"
            )
        head.load_state_dict(state)
        backbone = None
        backbone_state = {k.removeprefix("backbone."): v for k, v in tensors.items() if k.startswith("backbone.")}
        if backbone_state:
            backbone = spec.build()
            expected = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
            if expected != {k: tuple(v.shape) for k, v in backbone_state.items()}:
                raise HeadstartError(f"{where}: fine-tuned backbone weights do not fit {spec.name}; the bundle was altered or mixed up")
            backbone.load_state_dict(backbone_state)
        info = {k: meta[k] for k in INFO_KEYS if k in meta}
        temperature = float(meta.get("calibration", {}).get("temperature", 1.0))
        if not 0 < temperature < 1e3:
            raise HeadstartError(f"{where}: invalid softmax temperature {temperature} in model.json")
        return cls(spec, head, classes, hp, preprocessing, weights=weights, info=info, engine=engine, temperature=temperature,
                   backbone=backbone)


@dataclass
class _DatasetFeatures:
    """Backbone features of every sample of a dataset (unreadable files dropped from it)."""

    extraction: Extraction
    rows: dict[Path, int]  # image path -> row of extraction.features
    seconds: float

    @classmethod
    def extract(cls, extractor: FeatureExtractor, dataset: Dataset, quiet: bool) -> _DatasetFeatures:
        started = time.perf_counter()
        paths = [s.path for s in dataset.samples]
        extraction = extractor.extract(paths, quiet=quiet)
        return cls(extraction, {paths[i]: row for row, i in enumerate(extraction.ok)}, time.perf_counter() - started)

    def near_duplicate_groups(self, dataset: Dataset, threshold: float) -> dict[Path, int]:
        groups = group_near_duplicates(self.of(dataset.samples), threshold)
        return {s.path: int(g) for s, g in zip(dataset.samples, groups)}

    def of(self, samples: list) -> np.ndarray:
        return self.extraction.features[[self.rows[s.path] for s in samples]]

    def by_split(self, dataset: Dataset) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """(features, labels) per non-empty split."""
        return {
            split: (self.of(samples), np.array([s.label for s in samples], dtype=np.int64))
            for split in ("train", "val", "test")
            if (samples := dataset.split(split))
        }

    def leakage(self, dataset: Dataset, hp: HParams, history: History):
        samples = dataset.samples
        return check_leakage([str(s.path) for s in samples], [s.split for s in samples], self.of(samples),
                             [self.extraction.hashes[self.rows[s.path]] for s in samples], hp.near_duplicate_threshold,
                             history.to_dict())


def _train_head(extractor: FeatureExtractor, dataset: Dataset, features: _DatasetFeatures, hp: HParams,
                checkpoints: Checkpoints, quiet: bool) -> tuple[nn.Sequential, History]:
    """Stage 1 on the cached features (plus augmented views if asked), checkpointed every epoch."""
    saved = checkpoints.saved or {}
    if saved.get("stage1_done"):
        head = build_head(extractor.spec.feature_dim, len(dataset.classes), hp.hidden, hp.dropout)
        head.load_state_dict(saved["stage1"]["head"])
        return head.eval(), History(**saved["stage1"]["history"])
    split = features.by_split(dataset)
    (x_train, y_train), (x_val, y_val) = split["train"], split.get("val", (None, None))
    if hp.views:
        augmentation = hp.augmentation()
        if augmentation is None:
            raise HeadstartError("--views needs augmentation: add --augment light (or strong)")
        views = extractor.extract_views([s.path for s in dataset.split("train")], augmentation, hp.views, hp.seed, quiet=quiet)
        x_train = np.concatenate([x_train, *(v.features for v in views)])
        y_train = np.concatenate([y_train] + [y_train[v.ok] for v in views])
    with checkpoints.interruptible():
        head, history = fit_head(x_train, y_train, x_val, y_val, len(dataset.classes), hp, quiet=quiet,
                                 on_epoch=checkpoints.stage1_epoch, resume=saved.get("stage1"))
    checkpoints.stage1_done(head, history)
    return head, history


def _dataset_summary(dataset: Dataset) -> dict:
    return {
        "root": str(dataset.root.absolute()),
        "classes": dataset.classes,
        "presplit": dataset.presplit,
        "counts": dataset.counts(),
        "imbalance": round(dataset.imbalance(), 3),
        "skipped": [{"path": s.path, "reason": s.reason} for s in dataset.skipped],
        # The held-out images themselves, so that exports, reports and re-evaluations use exactly them.
        "held_out": {
            split: [[s.path.relative_to(dataset.root).as_posix(), dataset.classes[s.label]] for s in dataset.split(split)]
            for split in ("val", "test")
            if dataset.split(split)
        },
    }
