"""Stage 1: the head on the cached features, by the solver the settings choose.

lbfgs  a linear head (softmax regression) fitted full-batch, L2 strength picked on
       validation (`logistic.py`); numpy only, the default for a linear head
adamw  mini-batches with dropout and early stopping (`minibatch.py`); needed for --hidden
       layers, and it loads torch
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..evaluation.record import History
from ..events import EventBus
from ..hparams import HParams
from ..inference.head import Head
from .checkpoint import EpochSnapshot


def fit_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    num_classes: int,
    hp: HParams,
    events: EventBus | None = None,
    on_epoch: Callable[[EpochSnapshot], None] | None = None,
    resume: EpochSnapshot | None = None,
) -> tuple[Head, History]:
    """A fresh head trained on features, with its History.

    With the adamw solver, `on_epoch(snapshot)` gets the full training state after every epoch
    (checkpoints) and `resume` continues from such a snapshot; the lbfgs solver takes well under
    a second and is simply run again.

    Example:
        >>> rng = np.random.default_rng(0)
        >>> x = rng.normal(size=(40, 5)).astype(np.float32)
        >>> y = (x[:, 0] > 0).astype(np.int64)
        >>> head, history = fit_head(x[:30], y[:30], x[30:], y[30:], 2, HParams())
        >>> bool((head(x[30:]).argmax(1) == y[30:]).mean() > 0.8), len(history.l2) == len(history.val_loss)
        (True, True)
    """
    if hp.head_solver == "lbfgs":
        from .logistic import fit_logistic

        return fit_logistic(x_train, y_train, x_val, y_val, num_classes, hp, events)
    from .minibatch import fit_minibatch

    module, history = fit_minibatch(x_train, y_train, x_val, y_val, num_classes, hp, events, on_epoch, resume)
    return Head.of(module), history
