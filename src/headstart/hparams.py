"""Every training knob in one place, with defaults that generalise (none tuned to one dataset).

Each field declares, once, its type and limits (a pydantic-checked annotation) and its help, group
and flag (`knob`): `HParams` is validated from them, `headstart train`'s flags are generated from
them (`headstart.cli.arguments`), and the studio's settings form and its API are derived from them
(`settings_model`), so a new field is a new flag and a new checked setting, declared nowhere else.
"""

from __future__ import annotations

import functools
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Annotated, Any, Literal

from annotated_types import Ge, Gt, Interval, Len, MaxLen

from .errors import HeadstartError
from .options import TTA, Precision
from .presets import PRESETS

if TYPE_CHECKING:
    from pydantic import BaseModel, TypeAdapter

# What a bundle may hold (schema.HeadSchema reads them too): a head this wide trains, saves and loads.
MAX_HIDDEN_LAYERS, MAX_WIDTH = 8, 16_384


def knob(
    default: Any,
    help: str,
    group: str,
    *,
    flag: str | None = None,
    type: Any = None,
    metavar: str | None = None,
) -> Any:
    """A field with its command line: `flag` defaults to --field-name, `type` (the flag's parser)
    to the default's type. Its limits and choices are in its annotation."""
    cli = {"help": help, "group": group, "flag": flag, "type": type, "metavar": metavar}
    return field(default=default, metadata={"cli": cli})


def parse_widths(text: str) -> tuple[int, ...]:
    """'512,256' -> (512, 256).

    >>> parse_widths("512, 256")
    (512, 256)
    """
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

Solver = Literal["auto", "lbfgs", "adamw"]  # how stage 1 trains the head
Share = Annotated[float, Interval(ge=0, lt=1)]  # a fraction that leaves something over
Width = Annotated[int, Interval(ge=1, le=MAX_WIDTH)]


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
        headstart.errors.HeadstartError: invalid dropout: 1.5 (must be less than 1)
    """

    # model
    backbone: Annotated[str, Len(1, 200)] = knob(
        "mobilenet_v2",
        "pretrained backbone (see `headstart backbones`), or auto: the one `headstart compare` recommends here",
        MODEL,
    )
    hidden: Annotated[tuple[Width, ...], MaxLen(MAX_HIDDEN_LAYERS)] = knob(
        (), "dense+ReLU layers before the softmax layer, e.g. 512,256", MODEL, type=parse_widths, metavar="W[,W...]"
    )
    dropout: Share = knob(0.2, "dropout before each dense layer (adamw head and fine-tuning)", MODEL)
    budget: Annotated[float, Ge(0)] | None = knob(
        None,
        "seconds a comparison of backbones (--backbone auto, `headstart compare`) may take; candidates start "
        "cheapest first, and none starts after it",
        MODEL,
        type=float,
        metavar="SECONDS",
    )
    tta: TTA = knob(
        "none",
        "test-time augmentation: flip averages each image's features with its mirror image's, "
        "in evaluation, prediction and exports (twice the backbone work per image)",
        MODEL,
    )
    # optimisation (stage 1: the head on frozen features)
    solver: Solver = knob(
        "auto",
        "how the head is trained: lbfgs fits a linear head full-batch, its L2 strength picked on validation "
        "(numpy, well under a second); adamw trains mini-batches with dropout and early stopping (torch); "
        "auto: lbfgs unless --hidden asks for layers",
        OPTIMISATION,
    )
    l2: Annotated[float, Gt(0)] | None = knob(
        None, "lbfgs: this L2 strength instead of the one validation picks", OPTIMISATION, type=float, metavar="X"
    )
    epochs: Annotated[int, Interval(ge=1, le=10_000)] = knob(
        100, "adamw: maximum epochs; early stopping on validation loss usually ends sooner", OPTIMISATION
    )
    batch_size: Annotated[int, Interval(ge=1, le=4096)] = knob(
        32, "adamw head and fine-tuning: examples per optimiser step", OPTIMISATION
    )
    learning_rate: Annotated[float, Gt(0)] = knob(1e-3, "adamw: learning rate", OPTIMISATION, flag="--lr")
    weight_decay: Annotated[float, Ge(0)] = knob(1e-4, "adamw head and fine-tuning: weight decay", OPTIMISATION)
    label_smoothing: Share = knob(0.0, "share of each target spread over the other classes", OPTIMISATION)
    patience: Annotated[int, Ge(1)] = knob(
        10, "adamw: epochs without a lower validation loss before stopping", OPTIMISATION
    )
    class_weights: Literal["none", "auto"] = knob(
        "none", "auto: weight the loss by inverse class frequency", OPTIMISATION
    )
    calibrate: bool = knob(
        False, "fit a softmax temperature on validation so probabilities match accuracy", OPTIMISATION
    )
    seed: Annotated[int, Ge(0)] = knob(42, "seed for splits, shuffling and initialisation", OPTIMISATION)
    # augmentation
    augment: Literal["none", "light", "strong"] = knob(
        "none",
        "light: random resized crop, flip, small rotation; strong: also colour jitter, tighter crops",
        AUGMENTATION,
    )
    views: Annotated[int, Interval(ge=0, le=64)] = knob(
        0, "embed K augmented views of each training image for the head (cached)", AUGMENTATION, metavar="K"
    )
    flip: bool = knob(True, "no horizontal flips (left and right matter)", AUGMENTATION, flag="--no-flip")
    aug_scale: Annotated[float, Interval(gt=0, le=1)] | None = knob(
        None, "override: smallest crop, as a share of the image area", AUGMENTATION, type=float, metavar="MIN"
    )
    aug_rotation: Annotated[float, Interval(ge=0, le=180)] | None = knob(
        None, "override: largest rotation, in degrees", AUGMENTATION, type=float, metavar="DEG"
    )
    aug_color: Annotated[float, Interval(ge=0, le=1)] | None = knob(
        None, "override: brightness/contrast/saturation jitter", AUGMENTATION, type=float, metavar="X"
    )
    # stage 2: fine-tuning
    fine_tune: Annotated[int, Ge(0)] | Literal["all"] = knob(
        0,
        "unfreeze the top N backbone blocks (or all) after the head is trained",
        FINE_TUNING,
        type=str,
        metavar="N|all",
    )
    fine_tune_epochs: Annotated[int, Interval(ge=1, le=1000)] = knob(
        15, "maximum epochs of stage 2; early stopping on validation loss", FINE_TUNING
    )
    fine_tune_lr: Annotated[float, Gt(0)] = knob(
        1e-4, "backbone learning rate; the head gets 10x (discriminative rates)", FINE_TUNING
    )
    fine_tune_patience: Annotated[int, Ge(1)] = knob(
        4, "stage-2 epochs without a lower validation loss before stopping", FINE_TUNING
    )
    warmup_epochs: Annotated[int, Ge(0)] = knob(
        1, "epochs of linear learning-rate warm-up before cosine decay", FINE_TUNING
    )
    grad_clip: Annotated[float, Gt(0)] = knob(1.0, "gradient norm clip", FINE_TUNING)
    precision: Precision = knob("fp32", "bf16: autocast on CPUs that support it", FINE_TUNING)
    # data
    val_fraction: Share = knob(0.1, "share of images held out for validation when not pre-split", DATA)
    test_fraction: Share = knob(0.1, "share held out for the final test when not pre-split", DATA)
    group_by: Annotated[str, Len(1)] | None = knob(
        None,
        "keep groups in one split: auto clusters near-duplicate images (and the studio's recordings); "
        "a regex groups files by its capture in the file name, e.g. '^[a-z]+(\\d+)-' for rock01-023.png",
        DATA,
        type=str,
        metavar="auto|REGEX",
    )
    near_duplicate_threshold: Annotated[float, Interval(gt=0, le=1)] = knob(
        0.75, "centred feature cosine at which two images count as near-copies", DATA, metavar="COS"
    )

    def __post_init__(self):
        checked = _validate({f.name: getattr(self, f.name) for f in fields(self)})
        for f in fields(self):  # as validated: "3" -> 3, [8] -> (8,)
            setattr(self, f.name, getattr(checked, f.name))
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
        """model.json's form (tuples as lists)."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> HParams:
        """From model.json's form; settings this version does not know are ignored."""
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


# The field list in the docstring comes from the same metadata as the CLI help: one source for both.
HParams.__doc__ += "\n    Attributes:\n" + "".join(
    f"        {f.name}: {f.metadata['cli']['help']} (default {f.default!r}).\n" for f in fields(HParams)
)


def cli_flag(f) -> str:
    """The command-line flag of an HParams field: its declared one, else --field-name."""
    return f.metadata["cli"]["flag"] or "--" + f.name.replace("_", "-")


@functools.cache
def annotations() -> dict[str, Any]:
    """Each field's annotation, limits and choices included."""
    return typing.get_type_hints(HParams, include_extras=True)


def choices(name: str) -> tuple | None:
    """The values a field may take when its annotation lists them all (a Literal), else None.

    >>> choices("tta"), choices("fine_tune")
    (('none', 'flip'), None)
    """
    members = [a for a in _flatten(annotations()[name]) if a is not type(None)]
    if not all(typing.get_origin(a) is Literal for a in members):
        return None
    return tuple(v for a in members for v in typing.get_args(a))


def _flatten(annotation) -> list:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for arg in typing.get_args(annotation) for a in _flatten(arg)]
    return [annotation]


def settings_model(names: tuple[str, ...] | None = None, *, title: str = "HParams") -> type[BaseModel]:
    """A pydantic model of some (default: all) fields, with their limits, defaults and help: what
    the studio's API validates and its form is built from (`model_json_schema()`)."""
    from pydantic import ConfigDict, Field, create_model  # 0.1 s: not for `headstart --help`

    hints = annotations()
    chosen = [f for f in fields(HParams) if names is None or f.name in names]
    spec = {f.name: (hints[f.name], Field(f.default, description=f.metadata["cli"]["help"])) for f in chosen}
    return create_model(title, __config__=ConfigDict(extra="forbid"), **spec)


@functools.cache
def _adapter() -> TypeAdapter:
    """Checks every field against its annotation (built once, when first needed)."""
    from pydantic import TypeAdapter

    return TypeAdapter(settings_model())


def _validate(values: dict) -> BaseModel:
    """`values` checked and converted ("3" -> 3, [8] -> (8,)), or one line naming the first bad field."""
    from pydantic import ValidationError

    try:
        return _adapter().validate_python(values)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else "settings"
        raise HeadstartError(f"invalid {name}: {values.get(name)!r} ({_reason(first)})") from None


def _reason(error: dict) -> str:
    """pydantic's message, worded as a reason."""
    message = error["msg"]
    for prefix in ("Input should be ", "Value should be "):
        if message.startswith(prefix):
            return "must be " + message.removeprefix(prefix)
    return message
