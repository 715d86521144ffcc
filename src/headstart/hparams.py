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
    # augmentation
    augment: str = "none"  # none | light | strong (see augment.PRESETS)
    views: int = 0  # augmented views of every training image embedded for stage 1 (cached)
    flip: bool = True  # horizontal flips in augmentation
    aug_scale: float | None = None  # override: smallest crop area share
    aug_rotation: float | None = None  # override: max rotation in degrees
    aug_color: float | None = None  # override: brightness/contrast/saturation jitter
    # stage 2: fine-tuning
    fine_tune: int | str = 0  # top backbone blocks to unfreeze: 0 (off), N, or "all"
    fine_tune_epochs: int = 15  # upper bound; early stopping on validation loss
    fine_tune_lr: float = 1e-4  # backbone learning rate; the head gets 10x (discriminative rates)
    fine_tune_patience: int = 4
    warmup_epochs: int = 1
    grad_clip: float = 1.0
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    # data
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 42
    group_by: str | None = None  # None, "auto" (near-duplicate clusters) or a regex on file names
    near_duplicate_threshold: float = 0.75  # centred cosine at which two images count as near-copies

    def __post_init__(self):
        self.hidden = tuple(int(h) for h in self.hidden)
        if isinstance(self.fine_tune, str) and self.fine_tune.isdigit():
            self.fine_tune = int(self.fine_tune)
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
            "views": self.views >= 0,
            "fine_tune": self.fine_tune == "all" or (isinstance(self.fine_tune, int) and self.fine_tune >= 0),
            "fine_tune_epochs": self.fine_tune_epochs >= 1,
            "fine_tune_lr": self.fine_tune_lr > 0,
            "precision": self.precision in ("fp32", "bf16"),
            "grad_clip": self.grad_clip > 0,
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

    def augmentation(self):
        """The training augmentation these settings describe, or None."""
        from .augment import make_augmentation

        color = self.aug_color
        return make_augmentation(
            self.augment, flip=self.flip,
            scale=(self.aug_scale, 1.0) if self.aug_scale is not None else None,
            rotation=self.aug_rotation,
            brightness=color, contrast=color, saturation=color,
        )
