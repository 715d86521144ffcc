"""One epoch loop for both training stages: seeded shuffling, early stopping on validation loss
with the best weights restored, a checkpoint snapshot after every epoch, exact resume, and a
progress event per epoch. What differs between stages (data, optimiser, schedule) is a `Stage`."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from typing import Any, Protocol

import torch

from ..evaluation.record import History
from ..events import EventBus, as_bus
from .checkpoint import EpochSnapshot
from .stopping import EarlyStopping


class Stage(Protocol):
    """What one training stage supplies to `fit_epochs`."""

    name: str  # the events' stage: "train_head", "fine_tune"
    description: str  # for a progress bar
    epochs: int  # at most
    patience: int  # epochs without a lower validation loss before stopping
    size: int  # training examples per epoch
    batch_size: int

    def start_epoch(self, epoch: int) -> None:
        """Get ready for an epoch: training mode, fresh (augmented) inputs."""

    def step(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimiser step on the examples indexed by `batch`: returns (loss, logits, targets)."""

    def validate(self) -> tuple[float, float]:
        """(validation loss, validation accuracy) of the current weights."""

    def weights(self) -> dict[str, Any]:
        """The tensors to keep when an epoch is the best so far."""

    def load_weights(self, weights: dict[str, Any]) -> None:
        """Restore tensors `weights()` gave."""

    def state(self) -> dict[str, Any]:
        """Optimiser (and schedule) state, for checkpoints."""

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what `state()` gave."""


def seed_everything(seed: int) -> torch.Generator:
    """Seed torch's global generator (initialisation, dropout) and return one for shuffling."""
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


@contextmanager
def torch_threads(n: int):
    """Run a block with `n` intra-op threads; restore the previous setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def fit_epochs(
    stage: Stage,
    history: History,
    generator: torch.Generator,
    events: EventBus | None = None,
    start_loss: float = math.inf,
    on_epoch: Callable[[EpochSnapshot], None] | None = None,
    resume: EpochSnapshot | None = None,
) -> History:
    """Train `stage` for up to `stage.epochs` epochs and leave it holding its best weights.

    `start_loss` is the validation loss to beat (stage 2: the stage-1 model's), whose weights are
    the ones kept if no epoch beats it. `on_epoch(snapshot)` receives the whole training state after
    every epoch; `resume` takes such a snapshot and continues exactly where it was taken.
    """
    stopping = EarlyStopping(stage.patience, best_loss=start_loss)
    best, first = copy.deepcopy(stage.weights()), 0
    if resume is not None:
        stage.load_weights(resume.weights)
        stage.load_state(resume.stage)
        generator.set_state(resume.generator)
        torch.set_rng_state(resume.torch_rng)
        history = History.from_dict(resume.history)
        stopping = EarlyStopping(stage.patience, resume.best_loss, resume.stale)
        best, first = resume.best, resume.epoch
    with as_bus(events).stage(stage.name, stage.epochs, "epochs", stage.description) as progress:
        progress.step = first
        for epoch in range(first, stage.epochs):
            epoch_started = time.perf_counter()
            order = torch.randperm(stage.size, generator=generator)
            stage.start_epoch(epoch)
            loss_sum, correct = 0.0, 0
            for batch in order.split(stage.batch_size):
                loss, logits, targets = stage.step(batch)
                hits = (logits.argmax(1) == targets).sum().item()
                loss_sum, correct = loss_sum + loss.item() * len(batch), correct + hits
                history.step_loss.append(round(loss.item(), 5))
                history.step_accuracy.append(round(hits / len(batch), 5))
            val_loss, val_accuracy = stage.validate()
            history.add_epoch(
                loss_sum / stage.size, correct / stage.size, val_loss, val_accuracy, time.perf_counter() - epoch_started
            )
            if stopping.update(val_loss):
                history.best_epoch, best = epoch + 1, copy.deepcopy(stage.weights())
            if on_epoch is not None:
                on_epoch(
                    EpochSnapshot(
                        epoch=epoch + 1,
                        history=history.to_dict(),
                        best_loss=stopping.best_loss,
                        stale=stopping.stale,
                        best=best,
                        weights=stage.weights(),
                        stage=stage.state(),
                        generator=generator.get_state(),
                        torch_rng=torch.get_rng_state(),
                    )
                )
            progress.advance(**history.latest())  # after the checkpoint: a subscriber may cancel here
            if stopping.should_stop:
                break
    stage.load_weights(best)
    return history
