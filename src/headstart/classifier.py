"""`Classifier`: one object that trains, predicts, evaluates, saves and loads; the CLI mirrors it."""

from __future__ import annotations

import glob
import platform
import shutil
from contextlib import contextmanager
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
from .calibration import expected_calibration_error, fit_temperature, softmax
from .bundle import load_bundle, save_bundle
from .checkpoint import Interrupted, checkpoint_dir, load_checkpoint, run_fingerprint, save_checkpoint
from .data.dataset import Dataset, scan
from .data.images import is_image_path
from .data.remote import resolve_data
from .errors import HeadstartError
from .features import FeatureExtractor
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
        """Scan `data`, extract (cached) features, train the head, evaluate on the test split
        (validation if there is none) and, if `out` is given, save the bundle there."""
        hp = hparams or HParams()
        if overrides:
            hp = HParams.from_dict({**hp.to_dict(), **overrides})
        started = time.perf_counter()
        spec = get_backbone(hp.backbone)
        spec.weights_path(weights)  # fail early, before scanning, if weights are missing
        root = resolve_data(data, quiet=quiet)
        dataset = scan(root, hp.val_fraction, hp.test_fraction, hp.seed, group_by=hp.group_by)
        extractor = FeatureExtractor(spec, weights, engine=engine)
        t0 = time.perf_counter()
        paths = [s.path for s in dataset.samples]
        extraction = extractor.extract(paths, quiet=quiet)
        extract_seconds = time.perf_counter() - t0
        rows = {paths[i]: row for row, i in enumerate(extraction.ok)}
        dataset.drop(extraction.failures)
        if hp.group_by == "auto":
            order = [rows[s.path] for s in dataset.samples]
            groups = group_near_duplicates(extraction.features[order], hp.near_duplicate_threshold)
            dataset.regroup({s.path: int(g) for s, g in zip(dataset.samples, groups)})
        features = _features_by_split(dataset, extraction.features, rows)

        x_train, y_train = features["train"]
        x_val, y_val = features.get("val", (None, None))
        augmentation = hp.augmentation()
        if hp.views:
            if augmentation is None:
                raise HeadstartError("--views needs augmentation: add --augment light (or strong)")
            train_paths = [s.path for s in dataset.split("train")]
            views = extractor.extract_views(train_paths, augmentation, hp.views, hp.seed, quiet=quiet)
            x_train = np.concatenate([x_train, *(v.features for v in views)])
            y_train = np.concatenate([y_train] + [y_train[v.ok] for v in views])
        checkpoints = Checkpoints(out, hp, dataset, data, resume)
        saved = checkpoints.saved or {}
        with checkpoints.interruptible():
            if saved.get("stage1_done"):
                head = build_head(spec.feature_dim, len(dataset.classes), hp.hidden, hp.dropout)
                head.load_state_dict(saved["stage1"]["head"])
                head.eval()
                history = History(**saved["stage1"]["history"])
            else:
                head, history = fit_head(x_train, y_train, x_val, y_val, len(dataset.classes), hp, quiet=quiet,
                                         on_epoch=checkpoints.stage1_epoch, resume=saved.get("stage1"))
                checkpoints.stage1_done(head, history)
        stage1 = {"history": history.to_dict(), "val_accuracy": history.val_accuracy[history.best_epoch - 1] if history.val_accuracy else None}

        fine_tuned = None
        if hp.fine_tune:
            if "val" not in features:
                raise HeadstartError("fine-tuning needs a validation split for early stopping; set --val-fraction > 0")
            import copy

            from .finetune import fine_tune

            train_s, val_s = dataset.split("train"), dataset.split("val")
            with checkpoints.interruptible():
                fine_tuned, head, ft_history = fine_tune(
                    copy.deepcopy(extractor.backbone), head, extractor.preprocessing,
                    ([s.path for s in train_s], np.array([s.label for s in train_s])),
                    ([s.path for s in val_s], np.array([s.label for s in val_s])),
                    hp, augmentation=augmentation, quiet=quiet, on_epoch=checkpoints.stage2_epoch,
                    resume=saved.get("stage2"), **(fine_tune_options or {}),
                )
            if ft_history.best_epoch == 0:  # no epoch beat the stage-1 model on validation: it stays
                fine_tuned = None
            else:
                extractor = FeatureExtractor(spec, weights, backbone=fine_tuned, engine=engine)
                refreshed = extractor.extract(paths, quiet=quiet, description="Features, fine-tuned")
                features = _features_by_split(dataset, refreshed.features, {paths[i]: row for row, i in enumerate(refreshed.ok)})
        clf = cls(spec, head, dataset.classes, hp, weights=weights, engine=engine, backbone=fine_tuned)
        clf._extractor = extractor
        eval_split = "test" if "test" in features else "val" if "val" in features else "train"
        x_eval, y_eval = features[eval_split]
        calibration = {"ece_uncalibrated": expected_calibration_error(y_eval, clf.predict_features(x_eval))}
        if hp.calibrate and "val" in features:
            clf.temperature = fit_temperature(clf.logits(features["val"][0]), features["val"][1])
        calibration |= {"temperature": clf.temperature, "ece": expected_calibration_error(y_eval, clf.predict_features(x_eval))}
        metrics = compute_metrics(y_eval, clf.predict_features(x_eval), dataset.classes)
        # Leakage is judged on the pretrained features: the fine-tuned ones were fitted to these very images.
        pretrained_rows = {paths[i]: row for row, i in enumerate(extraction.ok)}
        order = [pretrained_rows[s.path] for s in dataset.samples]
        leakage = check_leakage(
            [str(s.path) for s in dataset.samples], [s.split for s in dataset.samples], extraction.features[order],
            [extraction.hashes[i] for i in order], hp.near_duplicate_threshold, history.to_dict(),
        )
        clf.info = {
            "data": _dataset_summary(dataset),
            "leakage": leakage.to_dict() | {"message": leakage.message()},
            "history": history.to_dict(),
            "evaluated_on": eval_split,
            "metrics": metrics.to_dict(),
            "calibration": calibration,
            "stages": {"head": stage1} | ({"fine_tune": {
                "history": ft_history.to_dict(), "blocks": hp.fine_tune,
                "val_accuracy": ft_history.val_accuracy[ft_history.best_epoch - 1] if ft_history.best_epoch else ft_history.start_val_accuracy,
                "kept_stage1": ft_history.best_epoch == 0,
            }} if hp.fine_tune else {}),
            "splits": {
                split: compute_metrics(y, clf.predict_features(x), dataset.classes).to_dict()
                for split, (x, y) in features.items()
            },
            "timings": {
                "feature_extraction_s": round(extract_seconds, 3),
                "images_computed": extraction.computed,
                "images_from_cache": len(extraction.ok) - extraction.computed,
                "head_training_s": round(history.seconds, 3),
                "total_s": round(time.perf_counter() - started, 3),
            },
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if out is not None:
            clf.save(out)
            checkpoints.discard()
        return clf

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
        probs = self.predict_features(extraction.features)
        items = []
        for i, p in zip(extraction.ok, probs):
            best = int(p.argmax())
            items.append(Prediction(paths[i], self.classes[best], float(p[best]), dict(zip(self.classes, map(float, p)))))
        return Predictions(self.classes, items, failures)

    def evaluate(self, data: PathLike, quiet: bool = True) -> Evaluation:
        """Metrics on a labelled folder: its test split if pre-split (else val), else all its images."""
        dataset = scan(resolve_data(data, quiet=quiet), val_fraction=0.0, test_fraction=0.0)
        split = next((s for s in ("test", "val") if dataset.presplit and dataset.split(s)), "train")
        index = {name: i for i, name in enumerate(self.classes)}
        unknown = [c for c in dataset.classes if c not in index]
        if unknown:
            raise HeadstartError(f"{dataset.root}: class {unknown[0]!r} is not one of the model's labels {self.classes}")
        samples = dataset.split(split)
        extraction = self.extractor.extract([s.path for s in samples], description="Evaluating", quiet=quiet)
        y = np.array([index[dataset.classes[samples[i].label]] for i in extraction.ok], dtype=np.int64)
        metrics = compute_metrics(y, self.predict_features(extraction.features), self.classes)
        failures = {Path(s.path): s.reason for s in dataset.skipped} | extraction.failures
        return Evaluation(metrics, split if dataset.presplit else "all", dataset.root, failures)

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
            "environment": environment(),
        }
        meta.setdefault("calibration", {})["temperature"] = self.temperature
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


class Checkpoints:
    """Per-epoch checkpoints of a training run saved to `out` (none when `out` is None)."""

    def __init__(self, out: PathLike | None, hp: HParams, dataset: Dataset, data: PathLike, resume: bool):
        self.dir = checkpoint_dir(out) if out is not None else None
        self.data, self.out = data, out
        self.fingerprint = run_fingerprint(hp.to_dict(), [(str(s.path), s.split, s.label) for s in dataset.samples])
        self.saved = None
        self.stage1: dict = {}
        if self.dir is None:
            if resume:
                raise HeadstartError("--resume needs --out: the folder of the run to continue")
            return
        if resume:
            self.saved = load_checkpoint(self.dir, self.fingerprint)
            if self.saved is None:
                raise HeadstartError(f"nothing to resume: no checkpoint at {self.dir}")
            self.stage1 = self.saved.get("stage1", {}) if self.saved.get("stage1_done") else {}
        elif self.dir.exists():
            raise HeadstartError(f"{self.out} has an unfinished run ({self.dir}): add --resume to continue it, or delete that folder")

    def stage1_epoch(self, snapshot: dict) -> None:
        if self.dir is not None:
            save_checkpoint(self.dir, {"fingerprint": self.fingerprint, "stage1": snapshot, "stage1_done": False})

    def stage1_done(self, head: nn.Module, history: History) -> None:
        self.stage1 = {"head": head.state_dict(), "history": history.to_dict()}
        if self.dir is not None:
            save_checkpoint(self.dir, {"fingerprint": self.fingerprint, "stage1": self.stage1, "stage1_done": True})

    def stage2_epoch(self, snapshot: dict) -> None:
        if self.dir is not None:
            save_checkpoint(self.dir, {"fingerprint": self.fingerprint, "stage1": self.stage1, "stage1_done": True, "stage2": snapshot})

    @contextmanager
    def interruptible(self):
        """Ctrl-C: stop with the last finished epoch saved and say how to resume."""
        try:
            yield
        except KeyboardInterrupt:
            if self.dir is None or not self.dir.exists():
                raise
            raise Interrupted(
                f"interrupted; training up to the last finished epoch is saved in {self.dir}. "
                f"Resume with: headstart train {self.data} --out {self.out} --resume (and the same options)"
            ) from None

    def discard(self) -> None:
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)


def _features_by_split(dataset: Dataset, features: np.ndarray, rows: dict[Path, int]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """(features, labels) per non-empty split; `rows` maps an image path to its feature row."""
    out = {}
    for split in ("train", "val", "test"):
        samples = dataset.split(split)
        if samples:
            x = features[[rows[s.path] for s in samples]]
            out[split] = (x, np.array([s.label for s in samples], dtype=np.int64))
    return out


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
