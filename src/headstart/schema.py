"""The shape of every file headstart reads back (model.json, an export's ONNX metadata, a
checkpoint's state.json), checked by pydantic at the boundary.

Whatever a file holds, reading it gives either values of these types and ranges or one
`HeadstartError` naming the file, the field and the reason; nothing half-read goes further.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import HeadstartError
from .hparams import MAX_HIDDEN_LAYERS
from .hparams import MAX_WIDTH as MAX_HIDDEN
from .options import TTA

BUNDLE_FORMAT = "headstart-bundle"  # model.json's "format": what tells a bundle headstart wrote
META_FILE = "model.json"
MAX_JSON_BYTES = 64 << 20  # model.json of 100 000 classes is about 20 MB
MAX_IMAGE_SIZE = 1024  # crop side: MobileNetV2's 224 is typical; beyond this, memory per image explodes
MAX_RESIZE = 2048
MAX_CLASSES = 100_000

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Finite = Annotated[float, Field(allow_inf_nan=False)]
Triple = Annotated[list[Finite], Field(min_length=3, max_length=3)]  # per RGB channel
Label = Annotated[str, Field(min_length=1, max_length=1024)]


class Strict(BaseModel):
    """Fields of the named types only: a string is not silently a number, nor a float an int."""

    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")


class PreprocessingSchema(Strict):
    """How pixels reach the backbone (`Preprocessing`), within sane sizes."""

    image_size: Annotated[int, Field(ge=16, le=MAX_IMAGE_SIZE)]
    resize_short: Annotated[int, Field(ge=16, le=MAX_RESIZE)]
    mean: Triple
    std: Triple
    interpolation: Literal["bilinear", "bicubic"]

    @field_validator("std")
    @classmethod
    def _positive(cls, std: list[float]) -> list[float]:
        if min(std) <= 0:
            raise ValueError("must be positive")
        return std

    @model_validator(mode="after")
    def _crop_fits(self) -> PreprocessingSchema:
        if self.image_size > self.resize_short:
            raise ValueError(f"image_size {self.image_size} is larger than resize_short {self.resize_short}")
        return self


def _unique(labels: list[str]) -> list[str]:
    if len(set(labels)) != len(labels):
        raise ValueError("labels are repeated")
    return labels


Labels = Annotated[list[Label], Field(min_length=2, max_length=MAX_CLASSES), AfterValidator(_unique)]


class HeadSchema(Strict):
    """The head's layout: hidden widths and dropout."""

    hidden: Annotated[list[Annotated[int, Field(ge=1, le=MAX_HIDDEN)]], Field(max_length=MAX_HIDDEN_LAYERS)]
    dropout: Annotated[float, Field(ge=0.0, lt=1.0)]


class BackboneSchema(Strict):
    """Which backbone, and the hash of the weights it was trained on."""

    name: Annotated[str, Field(max_length=100)]
    weights_sha256: Sha256
    feature_dim: Annotated[int, Field(ge=1, le=MAX_HIDDEN)]


class FileEntry(Strict):
    """A file of the bundle: its sha256 and size."""

    sha256: Sha256
    bytes: Annotated[int, Field(ge=0)]


class CalibrationSchema(Strict):
    """The softmax temperature and the calibration error before and after it."""

    temperature: Annotated[float, Field(gt=0.0, lt=1e3)]
    ece: Finite | None = None
    ece_uncalibrated: Finite | None = None


class HistorySchema(BaseModel):
    """Loose on purpose: curves are for reading, not for deciding predictions; types still checked."""

    model_config = ConfigDict(extra="ignore")
    train_loss: list[float] = []
    train_accuracy: list[float] = []
    step_loss: list[float] = []
    step_accuracy: list[float] = []
    steps_per_epoch: int = 0
    val_loss: list[float] = []
    val_accuracy: list[float] = []
    best_epoch: int = 0
    seconds: float = 0.0
    start_val_loss: float | None = None
    start_val_accuracy: float | None = None
    setup_seconds: float = 0.0
    epoch_seconds: list[float] = []
    l2: list[float] = []


class PerClassSchema(BaseModel):
    """Precision, recall, F1 and support of one class."""

    precision: float
    recall: float
    f1: float
    support: int


class MetricsSchema(BaseModel):
    """The metrics of one split."""

    model_config = ConfigDict(extra="ignore")
    accuracy: float
    per_class: dict[str, PerClassSchema]
    confusion: list[list[int]]
    top_k_accuracy: dict[int, float]
    count: int


class SkippedSchema(BaseModel):
    """A file left out of training, and why."""

    path: str
    reason: str


class NoteSchema(BaseModel):
    """A file used in training although its decoder warned, and what it said."""

    path: str
    note: str


class DataSchema(BaseModel):
    """What the model was trained on."""

    model_config = ConfigDict(extra="allow")
    root: str
    classes: list[str] = []
    counts: dict[str, dict[str, int]] = {}
    skipped: list[SkippedSchema] = []
    notes: list[NoteSchema] = []
    samples: dict[str, list[str]] = {}


class FineTuneStageSchema(BaseModel):
    """Stage 2's record."""

    model_config = ConfigDict(extra="allow")
    history: HistorySchema


class StagesSchema(BaseModel):
    """The record of each training stage."""

    model_config = ConfigDict(extra="allow")
    fine_tune: FineTuneStageSchema | None = None


class BundleMeta(Strict):
    """model.json. What decides predictions is strict; the training record is typed but lenient."""

    format: Literal[BUNDLE_FORMAT]
    format_version: Literal[2]
    labels: Labels
    backbone: BackboneSchema
    preprocessing: PreprocessingSchema
    test_time_augmentation: TTA = "none"
    head: HeadSchema
    calibration: CalibrationSchema
    files: dict[Literal["model.safetensors"], FileEntry]
    integrity: Sha256
    hparams: dict[str, Any] = {}
    data: DataSchema | None = None
    leakage: dict[str, Any] | None = None
    history: HistorySchema = HistorySchema()
    stages: StagesSchema = StagesSchema()
    evaluated_on: str | None = None
    metrics: MetricsSchema | None = None
    splits: dict[str, MetricsSchema] = {}
    timings: dict[str, float | int] = {}
    created: str = ""
    environment: dict[str, str] | None = None

    @model_validator(mode="after")
    def _weights_listed(self) -> BundleMeta:
        if "model.safetensors" not in self.files:
            raise ValueError("files lists no model.safetensors")
        return self


class ExportMeta(Strict):
    """The `headstart` metadata property of an exported ONNX file."""

    labels: Labels
    preprocessing: PreprocessingSchema


class CheckpointMeta(BaseModel):
    """A checkpoint's state.json: the run it belongs to, and a checksum over it and its tensors."""

    model_config = ConfigDict(extra="allow")
    fingerprint: Sha256
    checksum: Sha256
    stage1_done: bool
    stage1: dict[str, Any]
    stage2: dict[str, Any] | None = None


def read_json(path: Path, limit: int = MAX_JSON_BYTES) -> Any:
    """Parse a JSON file of at most `limit` bytes; anything unreadable is one HeadstartError line."""
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise HeadstartError(f"{path}: cannot read ({e.strerror or e})") from None
    if len(data) > limit:
        raise HeadstartError(f"{path}: larger than {limit >> 20} MB; not a file headstart wrote")
    return parse_json(data, path)


def parse_json(data: bytes | str, where: Path | str) -> Any:
    """JSON text as Python values, or one HeadstartError naming `where`."""
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HeadstartError(f"{where}: corrupt JSON ({e})") from None
    except RecursionError:
        raise HeadstartError(f"{where}: corrupt JSON (nested too deeply)") from None


Schema = TypeVar("Schema", bound=BaseModel)


def validate(schema: type[Schema], data: Any, where: Path | str) -> Schema:
    """`data` as `schema`, or a one-line error naming the first offending field."""
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        first = e.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        count = e.error_count()
        more = f" (and {count - 1} more problem{'s' * (count > 2)})" if count > 1 else ""
        raise HeadstartError(f"{where}: field {field}: {first['msg']}{more}") from None
    except RecursionError:
        raise HeadstartError(f"{where}: nested too deeply") from None


def is_bundle(path: Path) -> bool:
    """Positively a folder headstart wrote: its model.json says so (a file merely named so is not enough)."""
    meta_file = path / META_FILE
    try:
        if not meta_file.is_file() or meta_file.stat().st_size > MAX_JSON_BYTES:
            return False
        meta = parse_json(meta_file.read_bytes(), meta_file)
    except (OSError, HeadstartError):
        return False
    return isinstance(meta, dict) and meta.get("format") == BUNDLE_FORMAT
