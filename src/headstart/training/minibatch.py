"""Stage 1 with `--solver adamw`: the head (any `--hidden` layers, dropout) trained in PyTorch by
AdamW mini-batches on the cached features, with early stopping on validation loss and a
checkpoint after every epoch."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from ..evaluation.record import History
from ..events import EventBus
from ..hparams import HParams
from ..inference.graph import build_head
from .checkpoint import EpochSnapshot
from .loop import fit_epochs, seed_everything, torch_threads
from .losses import class_weights


def loss_functions(hp: HParams, labels: np.ndarray, num_classes: int) -> tuple[nn.Module, nn.Module]:
    """(training loss, validation loss): class-weighted if asked; label smoothing only in training."""
    weight = torch.from_numpy(class_weights(labels, num_classes)) if hp.class_weights == "auto" else None
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=hp.label_smoothing), nn.CrossEntropyLoss(weight=weight)


class AdamW:
    """AdamW (Loshchilov & Hutter 2019) with torch.optim.AdamW's exact update, for a few tensors.

    torch.optim would do the same, but its first use in a process imports torch._dynamo: 1.1 s
    here, two thirds of a whole warm-cache training run (bench/train_speed.py). A test checks that
    both give the same parameters step by step.
    """

    def __init__(self, params, lr: float, weight_decay: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p in params if p.requires_grad]
        self.lr, self.weight_decay, self.betas, self.eps = lr, weight_decay, betas, eps
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        self.steps = 0

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop the gradients."""
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
        """One update of every parameter with a gradient."""
        self.steps += 1
        beta1, beta2 = self.betas
        bias1, bias2 = 1 - beta1**self.steps, 1 - beta2**self.steps
        for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq):
            if p.grad is None:
                continue
            p.mul_(1 - self.lr * self.weight_decay)
            m.lerp_(p.grad, 1 - beta1)
            v.mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
            p.addcdiv_(m, (v / bias2).sqrt_().add_(self.eps), value=-self.lr / bias1)

    def state_dict(self) -> dict:
        """The moments and the step count."""
        return {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        """Restore `state_dict()`."""
        self.exp_avg, self.exp_avg_sq, self.steps = list(state["exp_avg"]), list(state["exp_avg_sq"]), state["steps"]


class HeadStage:
    """A fresh head, its optimiser and the (cached) features it trains on."""

    name, description = "train_head", "Training head"

    def __init__(self, x_train, y_train, x_val, y_val, num_classes: int, hp: HParams):
        self.epochs, self.patience, self.batch_size = hp.epochs, hp.patience, hp.batch_size
        self.head = build_head(x_train.shape[1], num_classes, hp.hidden, hp.dropout)
        self.loss, self.val_loss = loss_functions(hp, y_train, num_classes)
        self.optimizer = AdamW(self.head.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
        self.x, self.y = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
        has_val = x_val is not None and len(x_val) > 0
        self.xv, self.yv = (torch.from_numpy(x_val), torch.from_numpy(y_val).long()) if has_val else (self.x, self.y)
        self.size = len(self.x)

    def start_epoch(self, epoch: int) -> None:
        """Training mode (dropout on)."""
        self.head.train()

    def step(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimiser step on the examples of `batch`."""
        logits = self.head(self.x[batch])
        loss = self.loss(logits, self.y[batch])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss, logits, self.y[batch]

    def validate(self) -> tuple[float, float]:
        """Validation loss and accuracy (training data's when there is no validation split)."""
        self.head.eval()
        with torch.no_grad():
            logits = self.head(self.xv)
            return self.val_loss(logits, self.yv).item(), (logits.argmax(1) == self.yv).float().mean().item()

    def weights(self) -> dict:
        """The head's tensors."""
        return self.head.state_dict()

    def load_weights(self, weights: dict) -> None:
        """Restore `weights()`."""
        self.head.load_state_dict(weights)

    def state(self) -> dict:
        """The optimiser's state."""
        return self.optimizer.state_dict()

    def load_state(self, state: dict) -> None:
        """Restore `state()`."""
        self.optimizer.load_state_dict(state)


def fit_minibatch(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    num_classes: int,
    hp: HParams,
    events: EventBus | None = None,
    on_epoch: Callable[[EpochSnapshot], None] | None = None,
    resume: EpochSnapshot | None = None,
) -> tuple[nn.Sequential, History]:
    """Train a fresh head on features; returns it with the best validation-loss weights (eval mode).

    `on_epoch(snapshot)` gets the full training state after every epoch (checkpoints); `resume`
    takes such a snapshot and continues from it, reaching the same result as an uninterrupted run.
    """
    started = time.perf_counter()
    # The head's matrices are tiny: thread hand-offs cost more than they save (measured 4x slower on 2 threads).
    with torch_threads(1):
        generator = seed_everything(hp.seed)
        stage = HeadStage(x_train, y_train, x_val, y_val, num_classes, hp)
        history = History(steps_per_epoch=(stage.size + hp.batch_size - 1) // hp.batch_size)
        history = fit_epochs(stage, history, generator, events, on_epoch=on_epoch, resume=resume)
    history.seconds = time.perf_counter() - started
    return stage.head.eval(), history
