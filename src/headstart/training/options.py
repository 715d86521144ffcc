"""`RunOptions`: how and where one training run runs, declared once. `HParams` says what model to
train (and is saved with it); these say where the work happens and where it goes, and are not.
`Classifier.train`, `TrainingRun`, `headstart train` and the studio pass them as one object."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path

from ..distributed.ddp import Ranks
from ..errors import HeadstartError
from ..events import EventBus, Subscriber
from ..options import Engine, RayOptions, check_engine


@dataclass(frozen=True)
class RunOptions:
    """How and where one training run runs.

    Attributes:
        out: save the bundle here; per-epoch checkpoints go beside it (`<out>.checkpoint/`).
        resume: continue the interrupted run of `out` from its last finished epoch.
        weights: a user's copy of the backbone's weights file.
        engine: the backbone's runtime here: "auto" (onnxruntime when installed), "onnxruntime", "torch".
        ray: compute the features the cache lacks on a Ray cluster, there and that wide (None: in
            this process).
        features: a folder `headstart embed` wrote for this data and backbone: its features are
            used instead of being computed.
        on_event: a subscriber (or bus) receiving every step's events; raising `headstart.Cancelled`
            in it stops training with the last epoch checkpointed.
        quiet: draw no progress bars.
        ranks: this process's place among torchrun's processes (default: read from the
            environment torchrun sets, joining its process group, when the run starts).

    Example:
        >>> RunOptions(out="runs/x", engine="torch").out
        PosixPath('runs/x')
        >>> RunOptions(resume=True)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        headstart.errors.HeadstartError: --resume needs --out: the folder of the run to continue ...
    """

    out: Path | None = None
    resume: bool = False
    weights: Path | None = None
    engine: Engine = "auto"
    ray: RayOptions | None = None
    features: Path | None = None
    on_event: Subscriber | EventBus | None = None
    quiet: bool = False
    ranks: Ranks | None = None

    def __post_init__(self):
        for name in ("out", "weights", "features"):
            if (value := getattr(self, name)) is not None:
                object.__setattr__(self, name, Path(value))
        check_engine(self.engine)
        if self.resume and self.out is None:
            raise HeadstartError(
                "--resume needs --out: the folder of the run to continue (the interruption message names it)"
            )

    @classmethod
    def names(cls) -> set[str]:
        """The option names (what `Classifier.train` takes as keyword arguments besides `HParams`')."""
        return {f.name for f in fields(cls)}

    @classmethod
    def of(cls, options: RunOptions | None = None, **changes) -> RunOptions:
        """`options` (default: all defaults) with `changes`."""
        return replace(options or cls(), **changes)
