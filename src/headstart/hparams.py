"""Every training knob in one place, with defaults that generalise (none tuned to one dataset).

Each field carries its command-line help, group and flag, so `headstart train` is generated
from this class: a new field is a new flag, and nothing is declared twice.
"""

from __future__ import annotations

import argparse
from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any

from .errors import HeadstartError
from .presets import PRESETS


def knob(
    default: Any,
    help: str,
    group: str,
    *,
    flag: str | None = None,
    type: Any = None,
    choices: tuple | None = None,
    metavar: str | None = None,
) -> Any:
    """A field with its command line: `flag` defaults to --field-name, `type` to the default's type."""
    cli = {"help": help, "group": group, "flag": flag, "type": type, "choices": choices, "metavar": metavar}
    return field(default=default, metadata={"cli": cli})


def cli_flag(f: Field) -> str:
    """The command-line flag of an HParams field: its declared one, else --field-name."""
    return f.metadata["cli"]["flag"] or "--" + f.name.replace("_", "-")


def parse_widths(text: str) -> tuple[int, ...]:
    """'512,256' -> (512, 256)."""
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"expected comma-separated layer widths like 512,256, got {text!r}") from None


MODEL, OPTIMISATION, AUGMENTATION, FINE_TUNING, DATA = (
    "model",
    "optimisation",
    "augmentation",
    "fine-tuning (stage 2)",
    "data",
)


TTA = ("none", "flip")
SOLVERS = (
    "auto",
    "lbfgs",
    "adamw",
)  # of the head, stage 1  # test-time augmentation: none, or the mean of the image's and its mirror image's features


@dataclass
class HParams:
    """Training settings, validated on creation.

    Every field is also a `headstart train` flag (`--batch-size` for `batch_size`; `--lr` for
    `learning_rate`; `--no-flip` for `flip`), grouped as below, and is saved in model.json.

    Example:
        >>> hp = HParams(hidden=(512, 256), augment="light", views=2)
        >>> hp.epochs, hp.hidden, HParams.from_dict(hp.to_dict()) == hp
        (100, (512, 256), True)
        >>> HParams(dropout=1.5)
        Traceback (most recent call last):
        headstart.errors.HeadstartError: invalid dropout: 1.5
    """

    # model
    backbone: str = knob(
        "mobilenet_v2",
        "pretrained backbone (see `headstart backbones`), or auto: the one `headstart compare` recommends here",
        MODEL,
    )
    hidden: tuple[int, ...] = knob(
        (), "dense+ReLU layers before the softmax layer, e.g. 512,256", MODEL, type=parse_widths, metavar="W[,W...]"
    )
    dropout: float = knob(0.2, "dropout before each dense layer (adamw head and fine-tuning)", MODEL)
    budget: float | None = knob(
        None,
        "with --backbone auto: seconds the comparison may take (candidates start cheapest first)",
        MODEL,
        type=float,
        metavar="SECONDS",
    )
    tta: str = knob(
        "none",
        "test-time augmentation: flip averages each image's features with its mirror image's, "
        "in evaluation, prediction and exports (twice the backbone work per image)",
        MODEL,
        choices=TTA,
    )
    # optimisation (stage 1: the head on frozen features)
    solver: str = knob(
        "auto",
        "how the head is trained: lbfgs fits a linear head full-batch, its L2 strength picked on validation "
        "(numpy, well under a second); adamw trains mini-batches with dropout and early stopping (torch); "
        "auto: lbfgs unless --hidden asks for layers",
        OPTIMISATION,
        choices=SOLVERS,
    )
    l2: float | None = knob(
        None, "lbfgs: this L2 strength instead of the one validation picks", OPTIMISATION, type=float, metavar="X"
    )
    epochs: int = knob(
        100, "adamw: maximum epochs; early stopping on validation loss usually ends sooner", OPTIMISATION
    )
    batch_size: int = knob(32, "adamw head and fine-tuning: examples per optimiser step", OPTIMISATION)
    learning_rate: float = knob(1e-3, "adamw: learning rate", OPTIMISATION, flag="--lr")
    weight_decay: float = knob(1e-4, "adamw head and fine-tuning: weight decay", OPTIMISATION)
    label_smoothing: float = knob(0.0, "share of each target spread over the other classes", OPTIMISATION)
    patience: int = knob(10, "adamw: epochs without a lower validation loss before stopping", OPTIMISATION)
    class_weights: str = knob(
        "none", "auto: weight the loss by inverse class frequency", OPTIMISATION, choices=("none", "auto")
    )
    calibrate: bool = knob(
        False, "fit a softmax temperature on validation so probabilities match accuracy", OPTIMISATION
    )
    seed: int = knob(42, "seed for splits, shuffling and initialisation", OPTIMISATION)
    # augmentation
    augment: str = knob(
        "none",
        "light: random resized crop, flip, small rotation; strong: also colour jitter, tighter crops",
        AUGMENTATION,
        choices=("none", "light", "strong"),
    )
    views: int = knob(
        0, "embed K augmented views of each training image for the head (cached)", AUGMENTATION, metavar="K"
    )
    flip: bool = knob(True, "no horizontal flips (left and right matter)", AUGMENTATION, flag="--no-flip")
    aug_scale: float | None = knob(
        None, "override: smallest crop, as a share of the image area", AUGMENTATION, type=float, metavar="MIN"
    )
    aug_rotation: float | None = knob(
        None, "override: largest rotation, in degrees", AUGMENTATION, type=float, metavar="DEG"
    )
    aug_color: float | None = knob(
        None, "override: brightness/contrast/saturation jitter", AUGMENTATION, type=float, metavar="X"
    )
    # stage 2: fine-tuning
    fine_tune: int | str = knob(
        0,
        "unfreeze the top N backbone blocks (or all) after the head is trained",
        FINE_TUNING,
        type=str,
        metavar="N|all",
    )
    fine_tune_epochs: int = knob(15, "maximum epochs of stage 2; early stopping on validation loss", FINE_TUNING)
    fine_tune_lr: float = knob(1e-4, "backbone learning rate; the head gets 10x (discriminative rates)", FINE_TUNING)
    fine_tune_patience: int = knob(4, "stage-2 epochs without a lower validation loss before stopping", FINE_TUNING)
    warmup_epochs: int = knob(1, "epochs of linear learning-rate warm-up before cosine decay", FINE_TUNING)
    grad_clip: float = knob(1.0, "gradient norm clip", FINE_TUNING)
    precision: str = knob("fp32", "bf16: autocast on CPUs that support it", FINE_TUNING, choices=("fp32", "bf16"))
    # data
    val_fraction: float = knob(0.1, "share of images held out for validation when not pre-split", DATA)
    test_fraction: float = knob(0.1, "share held out for the final test when not pre-split", DATA)
    group_by: str | None = knob(
        None,
        "keep groups in one split: auto clusters near-duplicate images; a regex groups files by "
        "its capture in the file name, e.g. '^[a-z]+(\\d+)-' for rock01-023.png",
        DATA,
        type=str,
        metavar="auto|REGEX",
    )
    near_duplicate_threshold: float = knob(
        0.75, "centred feature cosine at which two images count as near-copies", DATA, metavar="COS"
    )

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
            "tta": self.tta in ("none", "flip"),
            "budget": self.budget is None or self.budget >= 0,
            "grad_clip": self.grad_clip > 0,
            "solver": self.solver in SOLVERS,
            "l2": self.l2 is None or self.l2 > 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise HeadstartError(f"invalid {bad[0]}: {getattr(self, bad[0])!r}")
        if self.solver == "lbfgs" and self.hidden:
            raise HeadstartError("--solver lbfgs fits a linear head: drop --hidden, or use --solver adamw")
        if self.tta == "flip" and not self.flip:
            raise HeadstartError("--tta flip mirrors images, but --no-flip says left and right matter here")

    @property
    def head_solver(self) -> str:
        """The solver that trains the head: `solver`, with auto resolved."""
        if self.solver != "auto":
            return self.solver
        return "adamw" if self.hidden else "lbfgs"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HParams:
        known = {f.name for f in fields(cls)}
        return cls(**{k: (tuple(v) if k == "hidden" else v) for k, v in d.items() if k in known})

    def replace(self, **overrides) -> HParams:
        """A copy with some fields changed (validated again)."""
        unknown = sorted(set(overrides) - {f.name for f in fields(self)})
        if unknown:
            raise HeadstartError(f"unknown training setting {unknown[0]!r}; see headstart.HParams")
        return HParams.from_dict({**self.to_dict(), **overrides})

    def with_preset(self, name: str) -> HParams:
        """A copy with preset `name`'s settings (fast, balanced, best: see `headstart.presets`).

        Example:
            >>> HParams(epochs=5).with_preset("fast").backbone
            'mobilenet_v2'
        """
        if name not in PRESETS:
            raise HeadstartError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
        settings = PRESETS[name]["settings"]
        if not self.flip:  # left and right matter here: no mirror-image views, whatever the preset
            settings = settings | {"tta": "none"}
        return self.replace(**settings)

    def augmentation(self):
        """The training augmentation these settings describe, or None."""
        from .data.augment import make_augmentation

        color = self.aug_color
        return make_augmentation(
            self.augment,
            flip=self.flip,
            scale=(self.aug_scale, 1.0) if self.aug_scale is not None else None,
            rotation=self.aug_rotation,
            brightness=color,
            contrast=color,
            saturation=color,
        )


# The field list in the docstring comes from the same metadata as the CLI help: one source for both.
HParams.__doc__ += "\n    Attributes:\n" + "".join(
    f"        {f.name}: {f.metadata['cli']['help']} (default {f.default!r}).\n" for f in fields(HParams)
)


def _argument_type(parse):
    """Wrap a parser so that its ValueError becomes argparse's one-line usage error."""

    def convert(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def add_hparams_arguments(parser: argparse.ArgumentParser) -> None:
    """One flag per `HParams` field, with the group and help text the field declares."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(HParams):
        cli = f.metadata["cli"]
        if cli["group"] not in groups:
            groups[cli["group"]] = parser.add_argument_group(cli["group"])
        group, flag = groups[cli["group"]], cli_flag(f)
        # SUPPRESS: a flag not given leaves no attribute, so a --preset can tell it from a typed default.
        if isinstance(f.default, bool):
            action = "store_false" if f.default else "store_true"
            group.add_argument(flag, dest=f.name, action=action, default=argparse.SUPPRESS, help=cli["help"])
            continue
        kind = cli["type"] or type(f.default)
        default_text = "" if f.default in (None, ()) else f" (default {f.default})"
        group.add_argument(
            flag,
            dest=f.name,
            type=_argument_type(kind),
            default=argparse.SUPPRESS,
            choices=cli["choices"],
            metavar=cli["metavar"],
            help=cli["help"] + default_text.replace("%", "%%"),
        )
    groups[MODEL].add_argument(
        "--preset",
        choices=tuple(PRESETS),
        help="a measured combination of the settings above (flags given as well win): "
        + "; ".join(f"{name}: {preset['summary']}" for name, preset in PRESETS.items()),
    )


def hparams_from_args(args: argparse.Namespace) -> HParams:
    """The settings of a parsed command line: the preset's (if any), then every flag given."""
    given = {f.name: getattr(args, f.name) for f in fields(HParams) if hasattr(args, f.name)}
    preset = getattr(args, "preset", None)
    if not preset:
        return HParams(**given)
    return HParams(flip=given.get("flip", True)).with_preset(preset).replace(**given)
