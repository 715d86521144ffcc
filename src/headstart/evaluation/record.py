"""What a training run produced besides the weights: settings, data, curves, metrics, leakage,
calibration, timings. `TrainingRecord.to_dict` gives model.json's fields and `from_dict` reads them
back, so code reads attributes while the file keeps its schema."""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from ..data.labelled import DataSummary
from ..hparams import HParams
from .leakage import LeakageReport
from .metrics import Metrics


@dataclass
class History:
    """Per-epoch curves of one training stage and where the best weights came from.

    A head fitted by L-BFGS (`logistic.py`) has no epochs: each point is instead one fit along its
    path of L2 strengths (`l2`, strongest first), and `best_epoch` numbers the fit kept.
    """

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)  # every optimiser step, for the curves
    step_accuracy: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = 0  # 0 in stage 2: no epoch beat the stage-1 model, which was kept
    seconds: float = 0.0
    start_val_loss: float | None = None  # stage 2: the stage-1 model's validation loss and accuracy
    start_val_accuracy: float | None = None
    setup_seconds: float = 0.0  # stage 2: one-time work before the first epoch (decoding, cached lower blocks)
    epoch_seconds: list[float] = field(default_factory=list)
    l2: list[float] = field(default_factory=list)  # L-BFGS heads: the strength of each point

    def to_dict(self) -> dict:
        """model.json's form (the "history" of a stage)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> History:
        """From model.json's form (fields it lacks keep their defaults)."""
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    def add_epoch(
        self, train_loss: float, train_accuracy: float, val_loss: float, val_accuracy: float, seconds: float
    ) -> None:
        """Record one epoch (or one fit of an L2 path)."""
        self.train_loss.append(train_loss)
        self.train_accuracy.append(train_accuracy)
        self.val_loss.append(val_loss)
        self.val_accuracy.append(val_accuracy)
        self.epoch_seconds.append(round(seconds, 3))

    def latest(self) -> dict[str, float]:
        """The last epoch's numbers, as progress events carry them."""
        if not self.val_loss:
            return {}
        return {
            "epoch": len(self.val_loss),
            "train_loss": self.train_loss[-1],
            "train_accuracy": self.train_accuracy[-1],
            "val_loss": self.val_loss[-1],
            "val_accuracy": self.val_accuracy[-1],
            "best_epoch": self.best_epoch,
        } | ({"l2": self.l2[-1]} if self.l2 else {})

    @property
    def best_val_accuracy(self) -> float | None:
        """Validation accuracy of the kept weights (stage 2 keeping stage 1: the starting accuracy)."""
        return self.val_accuracy[self.best_epoch - 1] if self.best_epoch else self.start_val_accuracy


@dataclass
class Calibration:
    """Softmax temperature and expected calibration error on the evaluated split, before and after."""

    temperature: float = 1.0
    ece: float | None = None
    ece_uncalibrated: float | None = None


@dataclass
class Timings:
    """Where a training run's time went: model.json's "timings"."""

    feature_extraction_s: float = 0.0
    images_computed: int = 0  # through the backbone; the rest came from the feature cache
    images_from_cache: int = 0
    head_training_s: float = 0.0
    total_s: float = 0.0

    def to_dict(self) -> dict[str, float]:
        """model.json's form."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, d: dict) -> Timings:
        """From model.json's form (fields it lacks keep their defaults)."""
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class TrainingRecord:
    """Everything model.json says about how a model was trained and how good it is."""

    hparams: HParams = field(default_factory=HParams)
    data: DataSummary | None = None
    leakage: LeakageReport | None = None
    history: History = field(default_factory=History)  # stage 1: the head
    fine_tune: History | None = None  # stage 2, when it ran
    evaluated_on: str | None = None  # the split `metrics` were measured on: test, else val
    metrics: Metrics | None = None
    splits: dict[str, Metrics] = field(default_factory=dict)
    calibration: Calibration = field(default_factory=Calibration)
    timings: Timings | None = None
    created: str = ""
    environment: dict[str, str] = field(default_factory=dict)  # filled when the model is first saved

    @property
    def skipped(self) -> dict[str, str]:
        """Files left out of training, with the reason."""
        return {s["path"]: s["reason"] for s in self.data.skipped} if self.data else {}

    @property
    def notes(self) -> dict[str, str]:
        """Files used in training although their decoder warned (decoded in the run that saved
        this model; a rerun on cached features decodes nothing), with the warning."""
        return {n["path"]: n["note"] for n in self.data.notes} if self.data else {}

    def to_dict(self) -> dict:
        """model.json's fields (those with nothing to say left out)."""
        stages = {"head": {"history": self.history.to_dict(), "val_accuracy": self.history.best_val_accuracy}}
        if self.fine_tune is not None:
            stages["fine_tune"] = {
                "history": self.fine_tune.to_dict(),
                "blocks": self.hparams.fine_tune,
                "val_accuracy": self.fine_tune.best_val_accuracy,
                "kept_stage1": self.fine_tune.best_epoch == 0,
            }
        out = {
            "hparams": self.hparams.to_dict(),
            "data": self.data.to_dict() if self.data else None,
            "leakage": self.leakage.to_dict() if self.leakage else None,
            "history": self.history.to_dict(),
            "stages": stages,
            "evaluated_on": self.evaluated_on,
            "metrics": self.metrics.to_dict() if self.metrics else None,
            "calibration": vars(self.calibration).copy(),
            "splits": {split: m.to_dict() for split, m in self.splits.items()},
            "timings": self.timings.to_dict() if self.timings else None,
            "created": self.created,
            "environment": self.environment or None,
        }
        return {k: v for k, v in out.items() if v is not None}

    @classmethod
    def from_dict(cls, meta: dict, classes: list[str]) -> TrainingRecord:
        """Read model.json's fields (those it lacks keep their defaults)."""
        fine_tune = meta.get("stages", {}).get("fine_tune")
        return cls(
            hparams=HParams.from_dict(meta.get("hparams", {})),
            data=DataSummary.from_dict(meta["data"]) if meta.get("data") else None,
            leakage=LeakageReport.from_dict(meta["leakage"]) if meta.get("leakage") else None,
            history=History.from_dict(meta.get("history", {})),
            fine_tune=History.from_dict(fine_tune["history"]) if fine_tune else None,
            evaluated_on=meta.get("evaluated_on"),
            metrics=Metrics.from_dict(meta["metrics"], classes) if meta.get("metrics") else None,
            splits={split: Metrics.from_dict(m, classes) for split, m in meta.get("splits", {}).items()},
            calibration=Calibration(**meta.get("calibration", {})),
            timings=Timings.from_dict(meta["timings"]) if meta.get("timings") else None,
            created=meta.get("created", ""),
            environment=dict(meta.get("environment", {})),
        )
