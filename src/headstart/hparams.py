"""Every training knob in one place, with defaults that generalise (none tuned to one dataset)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from .errors import HeadstartError


@dataclass
class HParams:
    # model
    backbone: str = "mobilenet_v2"
    hidden: tuple[int, ...] = ()  # dense+ReLU layers between features and the softmax layer
    dropout: float = 0.2
    # optimisation (stage 1: head on frozen features)
    epochs: int = 100  # an upper bound: early stopping on validation loss ends training sooner
    batch_size: int = 32
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    patience: int = 10  # epochs without a lower validation loss before stopping
    class_weights: str = "none"  # "none" or "auto" (inverse class frequency)
    calibrate: bool = False  # fit a softmax temperature on validation (temperature scaling)
    # data
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42
    group_by: str | None = None  # None, "auto" (near-duplicate clusters) or a regex on file names
    near_duplicate_threshold: float = 0.75  # centred cosine at which two images count as near-copies

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        checks = {
            "epochs": self.epochs >= 1,
            "batch_size": self.batch_size >= 1,
            "learning_rate": self.learning_rate > 0,
            "weight_decay": self.weight_decay >= 0,
            "dropout": 0 <= self.dropout < 1,
            "label_smoothing": 0 <= self.label_smoothing < 1,
            "patience": self.patience >= 1,
            "class_weights": self.class_weights in ("none", "auto"),
            "hidden": all(h > 0 for h in self.hidden),
            "near_duplicate_threshold": 0 < self.near_duplicate_threshold <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise HeadstartError(f"invalid {bad[0]}: {getattr(self, bad[0])!r}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HParams:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "hidden" else v) for k, v in d.items() if k in known})
