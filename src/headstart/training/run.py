"""`TrainingRun`: training as named steps a caller can drive one by one.

    scan -> extract -> group -> train_head -> fine_tune -> calibrate -> describe -> save

Each step runs the earlier ones it needs first, and runs once. Every step reports through the
run's events; `cancel()` (or a subscriber raising `Cancelled`) stops it the way Ctrl-C does, with
the last finished epoch checkpointed for `resume=True`. The finished model is built once, by
`calibrate`; nothing is mutated half-built.
"""

from __future__ import annotations

import copy
import functools
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..backbones import EnsembleSpec, get_backbone
from ..bundle import check_target, save_model
from ..data.dataset import Dataset, capture_sessions, require_unchanged, scan
from ..data.labelled import DataSummary
from ..data.remote import resolve_data
from ..distributed.ddp import join
from ..errors import HeadstartError
from ..evaluation.calibration import expected_calibration_error, fit_temperature
from ..evaluation.evaluation import Evaluation
from ..evaluation.leakage import group_near_duplicates, join_groups
from ..evaluation.record import Calibration, History, Timings, TrainingRecord
from ..hparams import HParams
from ..inference.features import feature_extractor
from ..inference.head import Head
from ..inference.model import Model
from ..progress import event_bus
from .checkpoint import Checkpoints
from .dataset_features import DatasetFeatures
from .head import fit_head
from .options import RunOptions

STEPS = ("scan", "extract", "group", "train_head", "fine_tune", "calibrate", "describe", "save")


def check_output(out: Path, data: str | Path) -> None:
    """`out` must be a folder headstart may replace (see `check_target`), outside the data folder
    or in a hidden folder of it (never scanned as data: the studio keeps its models there)."""
    check_target(Path(out).expanduser().absolute())
    data_root = Path(data).expanduser()
    if data_root.is_dir():
        resolved, root = out.expanduser().resolve(), data_root.resolve()
        inside = resolved == root or root in resolved.parents
        if inside and not any(part.startswith(".") for part in resolved.relative_to(root).parts):
            raise HeadstartError(f"{out}: inside the data folder {data_root}; save the model outside it")


def step(method):
    """A named step: runs the earlier steps it needs first, and runs once."""
    name = method.__name__

    @functools.wraps(method)
    def run_step(self: TrainingRun):
        if name in self.done:
            return
        for earlier in STEPS[: STEPS.index(name)]:
            if earlier not in self.done:
                getattr(self, earlier)()
        method(self)
        self.done.append(name)

    return run_step


class TrainingRun:
    """One training of a classifier on a folder of images.

    Args:
        data: an image folder (one sub-folder per class, or train/ val/ test/) or a named dataset.
        hparams: training settings (defaults: `HParams()`).
        options: how and where it runs (`RunOptions`: out, resume, weights, engine, ray,
            features, on_event, quiet, ranks); keyword arguments change single ones.

    Example:
        >>> run = TrainingRun(ants_bees, HParams(epochs=20), out=tmp / "model")
        >>> run.extract()                     # scans first, then extracts (cached) features
        >>> run.done, len(run.dataset.samples)
        (['scan', 'extract'], 36)
        >>> run.describe()                    # ... and so on, up to any step
        >>> run.model.classes, run.record.evaluated_on, (tmp / "model").exists()
        (['ants', 'bees'], 'val', False)
        >>> run.run().done[-1], (tmp / "model" / "model.json").exists()
        ('save', True)
    """

    def __init__(self, data: str | Path, hparams: HParams | None = None, options: RunOptions | None = None, **changes):
        self.data, self.hp = data, hparams or HParams()
        self.options = options = RunOptions.of(options, **changes)
        if options.out is not None:  # refused now, not after an hour of training
            check_output(options.out, data)
        self.ranks = options.ranks or join()  # one process, or one of torchrun's (headstart.distributed.ddp)
        self.events = event_bus(options.on_event, options.quiet or not self.ranks.leader)  # rank 0's bars only
        self.spec = get_backbone(self.hp.backbone)
        if isinstance(self.spec, EnsembleSpec) and self.hp.fine_tune:
            raise HeadstartError(
                f"--fine-tune: {self.spec.name} is a feature ensemble, trained on frozen features only; "
                "fine-tune one backbone instead, or drop --fine-tune"
            )
        self.spec.weights_path(options.weights)  # fail early, before scanning, if weights are missing
        self.extractor = feature_extractor(self.spec, options.weights, engine=options.engine, tta=self.hp.tta)
        self.started = time.perf_counter()
        self.done: list[str] = []
        self.dataset: Dataset | None = None
        self.features: DatasetFeatures | None = None  # pretrained features of every sample
        self.final: DatasetFeatures | None = None  # the final model's (differ after fine-tuning)
        self.checkpoints: Checkpoints | None = None
        self.head = None
        self.history: History | None = None
        self.tuned_backbone = None
        self.fine_tune_history: History | None = None
        self.model: Model | None = None
        self.record: TrainingRecord | None = None
        self.evaluation: Evaluation | None = None  # on the held-out split the record's metrics are from

    def cancel(self) -> None:
        """Stop at the next event, from any thread; the last finished epoch stays resumable."""
        self.events.cancel()

    def run(self) -> TrainingRun:
        """Every step not yet run, in order; under torchrun, the process group is left at the end."""
        try:
            for name in STEPS:
                getattr(self, name)()
        except BaseException:
            self.ranks.finish(failed=True)
            raise
        self.ranks.finish()
        return self

    @step
    def scan(self) -> None:
        """Find classes and images and split them (stratified, seeded, grouped by name if asked)."""
        hp = self.hp
        self.dataset = scan(
            resolve_data(self.data, self.events),
            hp.val_fraction,
            hp.test_fraction,
            hp.seed,
            group_by=hp.group_by,
            events=self.events,
        )

    @step
    def extract(self) -> None:
        """Backbone features of every image (cached); unreadable files leave the dataset, listed."""
        started, on_ray, options = time.perf_counter(), 0, self.options
        if options.features is not None:
            from ..distributed.embeddings import import_features

            import_features(options.features, self.extractor)
        if options.ray is not None:  # Ray fills the cache; this process reads it
            from ..distributed.embeddings import extract_on_ray

            paths = [s.path for s in self.dataset.samples]
            on_ray = extract_on_ray(self.extractor, paths, options.ray, self.events)
        self.features = DatasetFeatures.extract(self.extractor, self.dataset, self.events, self.ranks)
        self.features.seconds = time.perf_counter() - started
        self.features.extraction.computed += on_ray  # read back from the cache Ray filled
        self.dataset.drop(self.features.extraction.failures)
        self.dataset.note(self.features.extraction.notes)
        self.extractor.release()  # its memory arena (~185 MB) would sit under the head's training

    @step
    def group(self) -> None:
        """With group_by="auto": redraw the splits so near-duplicate clusters, and the frames of one
        studio recording, stay whole."""
        with self.events.stage("group", 1, description="Grouping near-duplicates") as progress:
            if self.hp.group_by == "auto":
                samples = self.dataset.samples
                groups = group_near_duplicates(self.features.of(samples), self.hp.near_duplicate_threshold)
                groups = join_groups(groups, capture_sessions([s.path for s in samples]))
                self.dataset.regroup({s.path: int(g) for s, g in zip(samples, groups)})
            progress.advance()

    @step
    def train_head(self) -> None:
        """Stage 1 on the cached features (plus augmented views if asked), checkpointed every epoch."""
        hp, dataset, options = self.hp, self.dataset, self.options
        self.checkpoints = Checkpoints(options.out, hp, dataset, self.data, options.resume, self.ranks.leader)
        self.ranks.barrier()  # every rank has looked for an unfinished run before rank 0 writes one
        saved = self.checkpoints.saved
        if saved is not None and saved.head is not None:
            state = {k: np.asarray(v) for k, v in saved.head.head.items()}
            self.head = Head.from_state(state, hp.hidden, hp.dropout, self.spec.feature_dim, len(dataset.classes))
            self.history = History.from_dict(saved.head.history)
            return
        split = self.features.by_split(dataset)
        (x_train, y_train), (x_val, y_val) = split["train"], split.get("val", (None, None))
        if hp.views:
            x_train, y_train = self._with_views(x_train, y_train)
        with self.checkpoints.interruptible():
            self.head, self.history = fit_head(
                x_train,
                y_train,
                x_val,
                y_val,
                len(dataset.classes),
                hp,
                self.events,
                on_epoch=self.checkpoints.stage1_epoch,
                resume=saved.head_epoch if saved is not None else None,
            )
        self.checkpoints.stage1_done(self.head, self.history)

    def _with_views(self, x_train: np.ndarray, y_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Training features plus those of `views` augmented crops of every training image (cached per view)."""
        from ..data.augment import augmentation_of, rng_for

        hp, augmentation, preprocessing = self.hp, augmentation_of(self.hp), self.extractor.preprocessing
        if augmentation is None:
            raise HeadstartError("--views needs augmentation: add --augment light (or strong)")
        paths = [s.path for s in self.dataset.split("train")]
        xs, ys = [x_train], [y_train]
        for view in range(hp.views):
            transform = lambda image, h, v=view: augmentation(image, preprocessing, rng_for(hp.seed, h, v))  # noqa: E731
            extraction = self.extractor.extract(
                paths,
                events=self.events,
                stage="views",
                description=f"Augmented view {view + 1}/{hp.views}",
                transform=transform,
                cache_tag=f"-aug{augmentation.fingerprint}-s{hp.seed}-v{view}",
            )
            xs.append(extraction.features)
            ys.append(y_train[extraction.ok])
        return np.concatenate(xs), np.concatenate(ys)

    @step
    def fine_tune(self) -> None:
        """Stage 2 (when hparams.fine_tune is set); keeps the tuned backbone only if it beat stage 1."""
        if not self.hp.fine_tune:
            return
        from ..data.augment import augmentation_of
        from .finetune import FineTuneStage, fine_tune

        train, val = self.dataset.split("train"), self.dataset.split("val")
        if not val:
            raise HeadstartError("fine-tuning needs a validation split for early stopping; set --val-fraction > 0")
        saved = self.checkpoints.saved
        with self.checkpoints.interruptible():
            stage = FineTuneStage(
                copy.deepcopy(self.extractor.backbone),
                self.head.module(),  # a torch copy: stage 1's head stays as it is
                self.extractor.preprocessing,
                ([s.path for s in train], np.array([s.label for s in train])),
                ([s.path for s in val], np.array([s.label for s in val])),
                self.hp,
                augmentation_of(self.hp),
                ranks=self.ranks,
            )
            resume = saved.fine_tune_epoch if saved is not None else None
            backbone, head, self.fine_tune_history = fine_tune(
                stage, self.events, self.checkpoints.stage2_epoch, resume
            )
        if self.fine_tune_history.best_epoch > 0:
            self.tuned_backbone, self.head = backbone, Head.of(head)

    @step
    def calibrate(self) -> None:
        """Build the model; with hparams.calibrate, fit its softmax temperature on validation."""
        model = Model(
            self.spec,
            self.head,
            self.dataset.classes,
            self.extractor.preprocessing,
            backbone=self.tuned_backbone,
            weights=self.options.weights,
            engine=self.options.engine,
            tta=self.hp.tta,
            # The pretrained backbone's extractor, with its onnxruntime session, serves the model too.
            extractor=self.extractor if self.tuned_backbone is None else None,
        )
        if self.tuned_backbone is None:
            self.final = self.features
        else:  # the tuned backbone sees the images differently: its own features (cached under its own key)
            self.final = DatasetFeatures.extract(model.extractor, self.dataset, self.events, self.ranks)
            require_unchanged([s.path for s in self.dataset.samples], self.final.extraction.ok)
        with self.events.stage("calibrate", 1, description="Calibrating") as progress:
            split = self.final.by_split(self.dataset)
            if self.hp.calibrate and "val" in split:
                model = model.with_temperature(
                    fit_temperature(model.decision_function(split["val"][0]), split["val"][1])
                )
            progress.advance(temperature=model.temperature)
        self.model = model

    @step
    def describe(self) -> None:
        """Measure the model on every split and write the training record."""
        with self.events.stage("describe", 1, description="Measuring") as progress:
            dataset, hp = self.dataset, self.hp
            evaluations = {
                split: Evaluation.from_features(
                    self.model, [s.path for s in dataset.split(split)], y, x, split, dataset.root
                )
                for split, (x, y) in self.final.by_split(dataset).items()
            }
            evaluated_on = next(s for s in ("test", "val", "train") if s in evaluations)
            held_out = self.evaluation = evaluations[evaluated_on]
            uncalibrated = held_out.uncalibrated if held_out.uncalibrated is not None else held_out.probabilities
            # Leakage is judged on the pretrained features: fine-tuned ones were fitted to these very images.
            extraction = self.features.extraction
            self.record = TrainingRecord(
                hparams=hp,
                data=DataSummary.of(dataset),
                leakage=self.features.leakage(dataset, hp.near_duplicate_threshold, self.history),
                history=self.history,
                fine_tune=self.fine_tune_history,
                evaluated_on=evaluated_on,
                metrics=held_out.metrics,
                splits={split: ev.metrics for split, ev in evaluations.items()},
                calibration=Calibration(
                    temperature=self.model.temperature,
                    ece=held_out.expected_calibration_error,
                    ece_uncalibrated=expected_calibration_error(held_out.labels, uncalibrated),
                ),
                timings=Timings(
                    feature_extraction_s=round(self.features.seconds, 3),
                    images_computed=extraction.computed,
                    images_from_cache=len(extraction.ok) - extraction.computed,
                    head_training_s=round(self.history.seconds, 3),
                    total_s=round(time.perf_counter() - self.started, 3),
                ),
                created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            )
            progress.advance(accuracy=held_out.metrics.accuracy)

    @step
    def save(self) -> None:
        """Write the bundle to `out` (if given; rank 0 only) and drop the checkpoint it supersedes."""
        if self.options.out is None or not self.ranks.leader:
            return
        with self.events.stage("save", 1, description="Saving") as progress:
            save_model(self.options.out, self.model, self.record)
            self.checkpoints.discard()
            progress.advance()
