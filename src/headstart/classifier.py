"""`Classifier`: the one object users hold. It trains, predicts, evaluates, reports, exports,
saves and loads, each by handing the work to the module that owns it; the CLI mirrors it."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from .bundle import load_model, save_model
from .data.labelled import LabelledImages, labelled_folder
from .errors import HeadstartError
from .evaluation.evaluation import Evaluation
from .evaluation.metrics import Metrics
from .evaluation.record import TrainingRecord
from .events import Subscriber
from .export.registry import EXPORT_FORMATS
from .hparams import HParams
from .inference.model import Model
from .inference.predictor import Predictor
from .options import Engine
from .progress import event_bus

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .evaluation.report import Report
    from .export import ExportResult
    from .training.options import RunOptions

# Training and exporting load torch when called: loading a bundle to predict, evaluate or report never does.

PathLike = str | Path


class Classifier(Model):
    """A trained image classifier: a `Model` (backbone, head, labels, preprocessing, temperature)
    with the `TrainingRecord` of how it was trained and how good it is.

    Build one with `Classifier.train(folder)` (or `headstart.train`), or `Classifier.load(bundle)`.

    Args:
        record: how it was trained and measured (empty for a model made by hand).
        **parts: the `Model` it is (`spec`, `head`, `classes`, ...; see `Model.parts`).

    Example:
        >>> clf = headstart.train(ants_bees, epochs=30)   # ants_bees/{train,val}/{ants,bees}/*.jpg
        >>> clf.classes, clf.record.evaluated_on, clf.metrics.count
        (['ants', 'bees'], 'val', 12)
        >>> bee = sorted((ants_bees / "val" / "bees").iterdir())[0]
        >>> clf.predict(bee)[0].label
        'bees'
        >>> path = clf.save(tmp / "ants-bees")
        >>> headstart.load(path).predict(bee)[0].probability == clf.predict(bee)[0].probability
        True
    """

    def __init__(self, record: TrainingRecord | None = None, **parts):
        super().__init__(**parts)
        self.record = record or TrainingRecord()
        self._held_out_evaluation: Evaluation | None = None  # training's, reused by the report

    @classmethod
    def of(cls, model: Model, record: TrainingRecord, evaluation: Evaluation | None = None) -> Classifier:
        """`model` with its training record (and its evaluation on the held-out split, if known)."""
        classifier = cls(record, **model.parts(), extractor=model.extractor)
        classifier._held_out_evaluation = evaluation
        return classifier

    def __repr__(self) -> str:
        metrics = self.record.metrics
        tail = f", {self.record.evaluated_on} accuracy={metrics.accuracy:.3f}" if metrics else ""
        tta = f", tta={self.tta!r}" if self.tta != "none" else ""
        return f"Classifier(backbone={self.spec.name!r}{tta}, classes={self.classes!r}{tail})"

    @property
    def hparams(self) -> HParams:
        """The settings it was trained with."""
        return self.record.hparams

    @property
    def metrics(self) -> Metrics | None:
        """Metrics on the held-out split it was evaluated on at training (`record.evaluated_on`)."""
        return self.record.metrics

    # -- training ---------------------------------------------------------------------------
    @classmethod
    def train(
        cls,
        data: PathLike,
        hparams: HParams | None = None,
        options: RunOptions | None = None,
        *,
        preset: str | None = None,
        **overrides,
    ) -> Classifier:
        """Train a classifier on a folder of images: scan, extract (cached) features, train the
        head, optionally fine-tune, calibrate, measure, and save if `options.out` is given.

        Args:
            data: a folder with one sub-folder per class, or train/ val/ test/ folders, or a named dataset.
            hparams: training settings (`HParams`).
            options: how and where it runs (`RunOptions`: out, resume, weights, engine, ray,
                features, on_event, quiet, ranks).
            preset: "fast", "balanced" or "best" (see `headstart.presets`): its settings replace
                `hparams`' backbone and test-time augmentation; `overrides` still win.
            **overrides: any `HParams` field or `RunOptions` field, by name.

        Returns:
            The trained classifier; `metrics` are on the test split, else validation.

        Example:
            >>> fits = []
            >>> def watch(event):  # the default head: one event per L2 strength tried
            ...     if event.stage == "train_head" and event.kind == "progress":
            ...         fits.append(event.metrics["l2"])
            >>> clf = Classifier.train(ants_bees, on_event=watch)
            >>> fits == clf.record.history.l2, len(fits) > 1
            (True, True)
            >>> clf = Classifier.train(ants_bees, HParams(solver="adamw", epochs=5), patience=5)
            >>> len(clf.record.history.val_loss)  # mini-batch epochs
            5
        """
        from .training.compare import resolve_backbone
        from .training.options import RunOptions
        from .training.run import TrainingRun

        changes = {k: overrides.pop(k) for k in list(overrides) if k in RunOptions.names()}
        options = RunOptions.of(options, **changes)
        # one display for the comparison (backbone "auto") and the run
        options = RunOptions.of(options, on_event=event_bus(options.on_event, options.quiet))
        hp = hparams or HParams()
        if preset:  # --no-flip first: the preset must know whether mirror images are allowed
            hp = hp.replace(flip=overrides.get("flip", hp.flip)).with_preset(preset)
        hp = resolve_backbone(data, hp.replace(**overrides), options.on_event)
        run = TrainingRun(data, hp, options).run()
        return cls.of(run.model, run.record, run.evaluation)

    # -- measuring and looking at it --------------------------------------------------------
    def held_out(self, data: PathLike | None = None) -> LabelledImages:
        """The images it was evaluated on at training (test split, else val); `data` if the folder moved."""
        if self.record.data is None:
            raise HeadstartError("this model records no training data; pass a labelled folder")
        return self.record.data.held_out_images(self.classes, data)

    def evaluate(
        self, data: PathLike | None = None, on_event: Subscriber | None = None, quiet: bool = True
    ) -> Evaluation:
        """Predictions and metrics on labelled images, with plots.

        Args:
            data: a labelled folder (its test split if pre-split, else val, else every image);
                None: the held-out split recorded at training.
            on_event: receives the evaluation's progress events.

        Returns:
            An `Evaluation`: `metrics`, `probabilities`, `failures`, and `plot_confusion()`,
            `plot_mistakes()`, `plot_calibration()`, `plot_embedding()`.
        """
        events = event_bus(on_event, quiet)
        images = self.held_out() if data is None else labelled_folder(data, self.classes, events)
        return Evaluation.of(self, images, events)

    def report(
        self,
        directory: PathLike | None = None,
        data: PathLike | None = None,
        on_event: Subscriber | None = None,
        quiet: bool = True,
    ) -> Report:
        """Write curves, confusion matrix, mistakes, calibration, embedding, per_class.csv and a
        self-contained report.html into `directory` (a temporary folder if None), evaluated on
        `data` or the held-out split; in a notebook the result displays inline."""
        from .evaluation.report import write_report  # matplotlib: loaded only when a report is written

        events = event_bus(on_event, quiet)
        known = self._held_out_evaluation if data is None else None
        evaluation = known or self.evaluate(data, on_event=events)
        return write_report(evaluation, self.record, directory or tempfile.mkdtemp(prefix="headstart-report-"), events)

    def plot_curves(self) -> Figure:
        """Loss and accuracy per step and epoch, both stages, best epoch marked."""
        from .evaluation.plots import plot_curves

        fine_tune = self.record.fine_tune
        return plot_curves(self.record.history.to_dict(), fine_tune.to_dict() if fine_tune else None)

    def export(
        self,
        format: str = "onnx",
        path: PathLike | None = None,
        overwrite: bool = False,
        data: PathLike | None = None,
        on_event: Subscriber | None = None,
    ) -> ExportResult:
        """Write the model in an export format, verified in that format's runtime against this model.

        Args:
            format: a registered format (`headstart export --help` lists them: onnx, onnx-int8,
                tflite, tflite-int8, torch-export, web, and any added with `register_export_format`).
            path: the file to write (default: model<suffix> in the current folder).
            overwrite: replace an existing file.
            data: the training folder, if it moved (verification and int8 calibration use its images).
            on_event: receives the export's progress events.

        Returns:
            The file and its verification on the held-out images (top-1 agreement, max |Δp|).

        Example:
            >>> clf = headstart.train(ants_bees)
            >>> result = clf.export("onnx", tmp / "ants.onnx")
            >>> result.verification["top1_agreement"], result.verification["max_abs_diff"] < 1e-4
            (1.0, True)
        """
        from .export import EXPORT_FORMATS, export

        calibrates = EXPORT_FORMATS.lookup(format).calibrates
        calibration = self.record.data.training_images(data) if calibrates and self.record.data else None
        return export(
            self,
            format,
            path,
            images=self.held_out(data),
            calibration_images=calibration,
            overwrite=overwrite,
            events=event_bus(on_event, quiet=True),
        )

    # -- persistence ------------------------------------------------------------------------
    def save(self, directory: PathLike) -> Path:
        """Write the bundle (model.safetensors + model.json) atomically; returns its path."""
        return save_model(directory, self, self.record)

    @classmethod
    def load(cls, directory: PathLike, weights: PathLike | None = None, engine: Engine = "auto") -> Classifier:
        """Read a bundle, refusing one that is altered, mixed up or made with other backbone weights."""
        model, record = load_model(directory, weights, engine)
        return cls.of(model, record)


def load(path: PathLike, weights: PathLike | None = None, engine: Engine = "auto") -> Predictor:
    """A predictor from a bundle folder (a `Classifier`) or an exported file whose format can be
    read back (`ExportedModel` for ONNX), recognised by its suffix.

    Args:
        path: a bundle folder written by `Classifier.save`, or a file from `export`.
        weights: a user's copy of the backbone's weights file (bundles only).
        engine: backbone runtime for bundles: "auto", "onnxruntime" or "torch".

    Returns:
        A `Predictor`: `classes`, `predict(paths)`, `predict_arrays(uint8 crops)`.

    Example:
        >>> clf = headstart.train(ants_bees, out=tmp / "bundle")
        >>> _ = clf.export("onnx", tmp / "ants.onnx")
        >>> bundle, onnx = headstart.load(tmp / "bundle"), headstart.load(tmp / "ants.onnx")
        >>> type(bundle).__name__, type(onnx).__name__
        ('Classifier', 'ExportedModel')
        >>> images = ants_bees / "val"
        >>> bundle.predict(images).labels == onnx.predict(images).labels
        True
    """
    from .export import format_of_path

    fmt = None if Path(path).is_dir() else format_of_path(path)
    if fmt is None:
        return Classifier.load(path, weights, engine)
    if fmt.load is None:
        loadable = ", ".join(f.suffix for f in EXPORT_FORMATS.values() if f.load is not None)
        raise HeadstartError(
            f"{path}: a {fmt.title} export runs in {fmt.runtime}; headstart loads bundles and {loadable} files"
        )
    return fmt.load(Path(path))


def train(data: PathLike, hparams: HParams | None = None, **options) -> Classifier:
    """Train a classifier on a folder of images (`Classifier.train`, whose arguments it takes).

    Args:
        data: a folder with one sub-folder per class, or train/ val/ test/ folders.
        hparams: training settings; keyword `options` may set any `HParams` field or any
            `RunOptions` field (`out`, `resume`, `weights`, `engine`, `on_event`, `quiet`, ...).

    Returns:
        The trained `Classifier`.

    Example:
        >>> clf = headstart.train(ants_bees, hidden=(64,), augment="light", views=1)
        >>> clf.hparams.hidden, clf.record.history.steps_per_epoch   # 24 images + 24 augmented views, batch 32
        ((64,), 2)
    """
    return Classifier.train(data, hparams, **options)
