"""Stage 1: train the head on cached features, with early stopping on validation loss."""

from __future__ import annotations

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from .head import build_head
from .hparams import HParams
from .progress import progress_bar


@dataclass
class History:
    """Per-epoch curves and where the best weights came from."""

    train_loss: list[float] = field(default_factory=list)
    train_accuracy: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)  # every optimiser step, for the curves
    step_accuracy: list[float] = field(default_factory=list)
    steps_per_epoch: int = 0
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = 0  # 0 in stage 2: no epoch beat the stage-1 model, which was kept
    seconds: float = 0.0
    start_val_loss: float | None = None  # stage 2: the stage-1 model's validation loss and accuracy
    start_val_accuracy: float | None = None
    setup_seconds: float = 0.0  # stage 2: one-time work before the first epoch (decoding, cached lower blocks)
    epoch_seconds: list[float] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def class_weights(labels: np.ndarray, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised to mean 1 (sklearn's 'balanced')."""
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    weights = len(labels) / (num_classes * np.maximum(counts, 1))
    return torch.tensor(weights, dtype=torch.float32)


@contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run a block with `n` intra-op threads; restore the previous setting afterwards."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self) -> None:
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


def seed_everything(seed: int) -> torch.Generator:
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def fit_head(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray | None,
    y_val: np.ndarray | None,
    num_classes: int,
    hp: HParams,
    quiet: bool = False,
    on_epoch: Callable[[dict], None] | None = None,
    resume: dict | None = None,
) -> tuple[nn.Sequential, History]:
    """Train a fresh head; returns it with the best validation-loss weights restored (eval mode).

    `on_epoch(snapshot)` gets the full training state after every epoch (checkpoints); `resume`
    takes such a snapshot and continues from it, reaching the same result as an uninterrupted run.
    """
    # The head's matrices are tiny: thread hand-offs cost more than they save (measured 4x slower on 2 threads).
    with torch_threads(1):
        return _fit_head(x_train, y_train, x_val, y_val, num_classes, hp, quiet, on_epoch, resume)


def _fit_head(x_train, y_train, x_val, y_val, num_classes, hp, quiet, on_epoch=None, resume=None):
    start = time.perf_counter()
    generator = seed_everything(hp.seed)
    head = build_head(x_train.shape[1], num_classes, hp.hidden, hp.dropout)
    weight = class_weights(y_train, num_classes) if hp.class_weights == "auto" else None
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=hp.label_smoothing)
    eval_loss = nn.CrossEntropyLoss(weight=weight)
    optimizer = AdamW(head.parameters(), lr=hp.learning_rate, weight_decay=hp.weight_decay)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train).long()
    has_val = x_val is not None and len(x_val) > 0
    xv, yv = (torch.from_numpy(x_val), torch.from_numpy(y_val).long()) if has_val else (xt, yt)

    history = History(steps_per_epoch=(len(xt) + hp.batch_size - 1) // hp.batch_size)
    best_loss, best_state, stale, first = float("inf"), copy.deepcopy(head.state_dict()), 0, 0
    if resume is not None:
        head.load_state_dict(resume["head"])
        optimizer.exp_avg, optimizer.exp_avg_sq = list(resume["exp_avg"]), list(resume["exp_avg_sq"])
        optimizer.steps = resume["steps"]
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        history = History(**resume["history"])
        best_loss, best_state, stale, first = resume["best_loss"], resume["best_state"], resume["stale"], resume["epoch"]

    def snapshot(epoch: int) -> dict:
        return {
            "epoch": epoch, "head": head.state_dict(), "exp_avg": optimizer.exp_avg, "exp_avg_sq": optimizer.exp_avg_sq,
            "steps": optimizer.steps, "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
            "history": history.to_dict(), "best_loss": best_loss, "best_state": best_state, "stale": stale,
        }

    with progress_bar("Training head", hp.epochs, quiet) as advance:
        advance(first)
        for epoch in range(first, hp.epochs):
            head.train()
            order = torch.randperm(len(xt), generator=generator)
            total, correct, seen = 0.0, 0, 0
            for batch in order.split(hp.batch_size):
                logits = head(xt[batch])
                loss = loss_fn(logits, yt[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                hits = (logits.argmax(1) == yt[batch]).sum().item()
                total += loss.item() * len(batch)
                correct += hits
                seen += len(batch)
                history.step_loss.append(round(loss.item(), 5))
                history.step_accuracy.append(round(hits / len(batch), 5))
            head.eval()
            with torch.no_grad():
                logits = head(xv)
                val_loss = eval_loss(logits, yv).item()
                val_acc = (logits.argmax(1) == yv).float().mean().item()
            history.train_loss.append(total / seen)
            history.train_accuracy.append(correct / seen)
            history.val_loss.append(val_loss)
            history.val_accuracy.append(val_acc)
            advance(info=f"val loss {val_loss:.3f} acc {val_acc:.3f}")
            if val_loss < best_loss - 1e-6:
                best_loss, best_state, stale = val_loss, copy.deepcopy(head.state_dict()), 0
                history.best_epoch = epoch + 1
            else:
                stale += 1
            if on_epoch is not None:
                on_epoch(snapshot(epoch + 1))
            if stale >= hp.patience:
                break
    head.load_state_dict(best_state)
    history.seconds = time.perf_counter() - start
    return head.eval(), history
