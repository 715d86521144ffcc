"""Stage 2: unfreeze the top blocks of the backbone and train them with the head.

Discriminative learning rates (head 10x the backbone's), linear warm-up then cosine decay,
gradient clipping, early stopping on validation loss with the best weights restored. BatchNorm
layers stay in inference mode throughout: their running statistics never move, which keeps small
batches from corrupting what ImageNet taught them. Without augmentation the frozen lower blocks
run once and their activations are reused every epoch.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn

from .augment import Augmentation, rng_for
from .errors import HeadstartError
from .features import cache_root, export_onnx, load_crops, ort_session, run_batched, state_fingerprint
from .hparams import HParams
from .preprocessing import Normalize, Preprocessing
from .progress import progress_bar
from .training import History, class_weights, seed_everything


def split_blocks(backbone: nn.Module, n: int | str) -> tuple[list[nn.Module], list[nn.Module]]:
    """(frozen lower blocks, trainable top blocks) following the spec's block list."""
    blocks = backbone.blocks()
    count = len(blocks) if n == "all" else int(n)
    if not 1 <= count <= len(blocks):
        raise HeadstartError(f"--fine-tune must be between 1 and {len(blocks)} blocks (or 'all'), got {n}")
    return blocks[: len(blocks) - count], blocks[len(blocks) - count :]


def freeze_batchnorm(module: nn.Module) -> None:
    """Put every BatchNorm layer in inference mode (call after each .train())."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()


class Lower(nn.Module):
    def __init__(self, blocks: Sequence[nn.Module], preprocessing: Preprocessing):
        super().__init__()
        self.normalize = Normalize(preprocessing)
        self.blocks = nn.ModuleList(blocks)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.normalize(images)
        for block in self.blocks:
            x = block(x)
        return x


class Upper(nn.Module):
    def __init__(self, blocks: Sequence[nn.Module], head: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean((2, 3)))


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


@dataclass
class SpeedOptions:
    """CPU execution choices, measured in bench/finetune.py."""

    channels_last: bool = True
    bf16: bool = False
    compile: bool = False
    cache_lower: bool = True  # reuse the frozen lower blocks' activations when nothing is augmented
    onnx_lower: bool = True  # run the frozen lower blocks in onnxruntime rather than eager PyTorch


@dataclass
class FineTuneState:
    """Everything needed to continue after the last finished epoch (see checkpoint.py)."""

    epoch: int = 0
    history: History = field(default_factory=History)
    best_loss: float = float("inf")
    stale: int = 0
    best_backbone: dict | None = None
    best_head: dict | None = None


def fine_tune(
    backbone: nn.Module,
    head: nn.Module,
    preprocessing: Preprocessing,
    train: tuple[list, np.ndarray],
    val: tuple[list, np.ndarray],
    hp: HParams,
    augmentation: Augmentation | None = None,
    hashes: dict | None = None,
    speed: SpeedOptions | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    resume: dict | None = None,
    quiet: bool = False,
) -> tuple[nn.Module, nn.Module, History]:
    """Fine-tune the top `hp.fine_tune` blocks of `backbone` with `head` (both changed in place).

    `train`/`val` are (paths, labels). `on_epoch(snapshot)` gets the full training state after
    every epoch (checkpoints); `resume` restores such a snapshot and continues from there.
    """
    speed = speed or SpeedOptions()
    start = time.perf_counter()
    generator = seed_everything(hp.seed + 1)
    lower_blocks, upper_blocks = split_blocks(backbone, hp.fine_tune)
    lower, upper = Lower(lower_blocks, preprocessing).eval(), Upper(upper_blocks, head)
    for p in backbone.parameters():
        p.requires_grad_(False)
    for p in upper.parameters():
        p.requires_grad_(True)
    if speed.channels_last:
        backbone.to(memory_format=torch.channels_last)
    autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if speed.bf16 or hp.precision == "bf16" else nullcontext
    forward = torch.compile(upper) if speed.compile else upper

    session = None
    if speed.onnx_lower and lower_blocks and importlib.util.find_spec("onnxruntime"):
        path = cache_root() / "onnx" / f"lower-{state_fingerprint(backbone)}-{len(lower_blocks)}-{preprocessing.fingerprint}.onnx"
        if not path.exists():
            export_onnx(lower, path, preprocessing.image_size, output_name="activations")
        session = ort_session(path)

    def lower_pass(crops: np.ndarray) -> torch.Tensor:
        if session is not None:  # frozen blocks: onnxruntime runs them ~5x faster than eager PyTorch here
            acts = torch.from_numpy(run_batched(lambda b: session.run(None, {"images": b})[0], crops))
            return acts.contiguous(memory_format=torch.channels_last) if speed.channels_last else acts
        outs = []
        with torch.no_grad(), autocast():
            for i in range(0, len(crops), 64):
                x = torch.from_numpy(crops[i : i + 64])
                if speed.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                outs.append(lower(x).float())
        return torch.cat(outs)

    train_paths, y_train = train
    val_paths, y_val = val
    val_crops, _ = load_crops(val_paths, preprocessing)
    val_acts, yv = lower_pass(val_crops), torch.from_numpy(np.asarray(y_val)).long()
    del val_crops
    cached = None
    if augmentation is None and speed.cache_lower:
        crops, _ = load_crops(train_paths, preprocessing)
        cached = lower_pass(crops)
        del crops
    yt = torch.from_numpy(np.asarray(y_train)).long()

    weight = class_weights(np.asarray(y_train), head[-1].out_features) if hp.class_weights == "auto" else None
    loss_fn = nn.CrossEntropyLoss(weight=weight, label_smoothing=hp.label_smoothing)
    eval_loss = nn.CrossEntropyLoss(weight=weight)
    head_params = list(head.parameters())
    head_ids = {id(p) for p in head_params}
    body_params = [p for p in upper.parameters() if id(p) not in head_ids]
    optimizer = torch.optim.AdamW(
        [{"params": body_params, "lr": hp.fine_tune_lr}, {"params": head_params, "lr": 10 * hp.fine_tune_lr}],
        weight_decay=hp.weight_decay,
    )
    steps_per_epoch = math.ceil(len(yt) / hp.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(hp.fine_tune_epochs * steps_per_epoch, hp.warmup_epochs * steps_per_epoch)
    )
    def validate() -> tuple[float, float]:
        upper.eval()
        with torch.no_grad(), autocast():
            logits = torch.cat([forward(val_acts[i : i + 128]).float() for i in range(0, len(val_acts), 128)])
        return eval_loss(logits, yv).item(), (logits.argmax(1) == yv).float().mean().item()

    state = FineTuneState(history=History(steps_per_epoch=steps_per_epoch))
    # The stage-1 model is epoch 0: fine-tuning keeps it unless an epoch beats its validation loss.
    state.best_loss, start_accuracy = validate()
    state.history.start_val_loss, state.history.start_val_accuracy = state.best_loss, start_accuracy
    state.best_backbone, state.best_head = copy.deepcopy(backbone.state_dict()), copy.deepcopy(head.state_dict())
    if resume is not None:
        backbone.load_state_dict(resume["backbone"])
        head.load_state_dict(resume["head"])
        saved_optimizer = dict(resume["optimizer"])
        saved_optimizer["state"] = {int(k): v for k, v in saved_optimizer["state"].items()}  # JSON made the keys strings
        optimizer.load_state_dict(saved_optimizer)
        scheduler.load_state_dict(resume["scheduler"])
        generator.set_state(resume["generator"])
        torch.set_rng_state(resume["torch_rng"])
        state = FineTuneState(resume["epoch"], History(**resume["history"]), resume["best_loss"], resume["stale"],
                              resume["best_backbone"], resume["best_head"])

    def snapshot() -> dict:
        return {
            "epoch": state.epoch, "history": state.history.to_dict(), "best_loss": state.best_loss, "stale": state.stale,
            "best_backbone": state.best_backbone, "best_head": state.best_head,
            "backbone": backbone.state_dict(), "head": head.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
        }

    state.history.setup_seconds = round(time.perf_counter() - start, 3)
    with progress_bar("Fine-tuning", hp.fine_tune_epochs, quiet) as advance:
        advance(state.epoch)
        for epoch in range(state.epoch, hp.fine_tune_epochs):
            epoch_start = time.perf_counter()
            upper.train()
            freeze_batchnorm(upper)
            order = torch.randperm(len(yt), generator=generator)
            if cached is None:  # augmented (or uncached) crops, fresh every epoch
                transform = None
                if augmentation is not None:
                    transform = lambda image, h, e=epoch: augmentation(image, preprocessing, rng_for(hp.seed, h, 1000 + e))  # noqa: E731
                crops, _ = load_crops(train_paths, preprocessing, transform)
                acts = lower_pass(crops)
                del crops
            else:
                acts = cached
            total, correct = 0.0, 0
            for batch in order.split(hp.batch_size):
                with autocast():
                    logits = forward(acts[batch]).float()
                loss = loss_fn(logits, yt[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(upper.parameters(), hp.grad_clip)
                optimizer.step()
                scheduler.step()
                hits = (logits.argmax(1) == yt[batch]).sum().item()
                total += loss.item() * len(batch)
                correct += hits
                state.history.step_loss.append(round(loss.item(), 5))
                state.history.step_accuracy.append(round(hits / len(batch), 5))
            val_loss, val_acc = validate()
            h = state.history
            h.epoch_seconds.append(round(time.perf_counter() - epoch_start, 3))
            h.train_loss.append(total / len(yt))
            h.train_accuracy.append(correct / len(yt))
            h.val_loss.append(val_loss)
            h.val_accuracy.append(val_acc)
            state.epoch = epoch + 1
            if val_loss < state.best_loss - 1e-6:
                state.best_loss, state.stale, h.best_epoch = val_loss, 0, epoch + 1
                state.best_backbone = copy.deepcopy(backbone.state_dict())
                state.best_head = copy.deepcopy(head.state_dict())
            else:
                state.stale += 1
            advance(info=f"val loss {val_loss:.3f} acc {val_acc:.3f}")
            if on_epoch is not None:
                on_epoch(snapshot())
            if state.stale >= hp.fine_tune_patience:
                break
    backbone.load_state_dict(state.best_backbone)
    head.load_state_dict(state.best_head)
    backbone.to(memory_format=torch.contiguous_format)
    for p in backbone.parameters():
        p.requires_grad_(False)
    state.history.seconds = time.perf_counter() - start
    return backbone.eval(), head.eval(), state.history
