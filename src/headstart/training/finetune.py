"""Stage 2: unfreeze the top blocks of the backbone and train them with the head.

Discriminative learning rates (head 10x the backbone's), linear warm-up then cosine decay,
gradient clipping, early stopping on validation loss with the best weights restored. BatchNorm
layers stay in inference mode throughout: their running statistics never move, which keeps small
batches from corrupting what ImageNet taught them. Without augmentation the frozen lower blocks
run once and their activations are reused every epoch.
"""

from __future__ import annotations

import importlib.util
import math
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..data.augment import Augmentation, rng_for
from ..data.dataset import require_unchanged
from ..distributed.ddp import Ranks
from ..errors import HeadstartError
from ..evaluation.record import History
from ..events import EventBus
from ..hparams import HParams
from ..inference.graph import ModelGraph
from ..inference.pipeline import load_crops
from ..inference.runtime import cached_session, run_batched, state_fingerprint
from ..preprocessing import Preprocessing
from .checkpoint import EpochSnapshot
from .loop import fit_epochs, seed_everything
from .minibatch import loss_functions


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


class Upper(nn.Module):
    """The trainable top: the unfrozen blocks, pooling and the head (activations in, logits out)."""

    def __init__(self, blocks: Sequence[nn.Module], head: nn.Module):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The unfrozen blocks and the head on the frozen blocks' activations."""
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean((2, 3)))


def warmup_cosine(total_steps: int, warmup_steps: int) -> Callable[[int], float]:
    """Learning-rate factor: linear warm-up, then cosine decay to zero."""

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


class LowerBlocks:
    """The frozen lower blocks as a function of uint8 crops: onnxruntime when available (~5x faster
    than eager PyTorch here), else PyTorch."""

    def __init__(
        self,
        backbone: nn.Module,
        blocks: list[nn.Module],
        preprocessing: Preprocessing,
        speed: SpeedOptions,
        autocast: Callable,
    ):
        self.graph = ModelGraph(preprocessing, blocks, pool=False).eval()
        self.speed, self.autocast = speed, autocast
        self.session = None
        if speed.onnx_lower and blocks and importlib.util.find_spec("onnxruntime"):
            name = f"lower-{state_fingerprint(backbone)}-{len(blocks)}-{preprocessing.fingerprint}.onnx"
            self.session = cached_session(name, lambda: self.graph, preprocessing.image_size, output_name="activations")

    def __call__(self, crops: np.ndarray) -> torch.Tensor:
        if self.session is not None:
            acts = torch.from_numpy(run_batched(lambda b: self.session.run(None, {"images": b})[0], crops))
            return acts.contiguous(memory_format=torch.channels_last) if self.speed.channels_last else acts
        outs = []
        with torch.no_grad(), self.autocast():
            for i in range(0, len(crops), 64):
                x = torch.from_numpy(crops[i : i + 64])
                if self.speed.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                outs.append(self.graph(x).float())
        return torch.cat(outs)


class FineTuneStage:
    """The top blocks and head, trained on the lower blocks' activations of (augmented) crops.

    Args:
        backbone: the network to tune (changed in place).
        head: the stage-1 head (changed in place).
        preprocessing: how images become the backbone's uint8 crops.
        train: (image paths, labels) to train on.
        val: (image paths, labels) for early stopping.
        hp: settings: `fine_tune` blocks, epochs, learning rates, warm-up, clipping, precision.
        augmentation: fresh augmented crops every epoch; None reuses cached activations.
        speed: CPU execution choices (measured in bench/finetune.py).
        ranks: this process's place among DDP processes (see `headstart.distributed.ddp`): the
            frozen blocks' activations are computed in shares and gathered, each step's batch is
            split between the ranks and their gradients averaged.
    """

    name, description = "fine_tune", "Fine-tuning"

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        preprocessing: Preprocessing,
        train: tuple[list, np.ndarray],
        val: tuple[list, np.ndarray],
        hp: HParams,
        augmentation: Augmentation | None = None,
        speed: SpeedOptions | None = None,
        ranks: Ranks | None = None,
    ):
        started = time.perf_counter()
        speed = speed or SpeedOptions()
        self.ranks = ranks or Ranks()
        self.backbone, self.head, self.preprocessing, self.augmentation = backbone, head, preprocessing, augmentation
        self.hp, self.epochs, self.patience, self.batch_size = (
            hp,
            hp.fine_tune_epochs,
            hp.fine_tune_patience,
            hp.batch_size,
        )
        lower_blocks, upper_blocks = split_blocks(backbone, hp.fine_tune)
        self.upper = Upper(upper_blocks, head)
        for p in backbone.parameters():
            p.requires_grad_(False)
        for p in self.upper.parameters():
            p.requires_grad_(True)
        if speed.channels_last:
            backbone.to(memory_format=torch.channels_last)
        bf16 = speed.bf16 or hp.precision == "bf16"
        self.autocast = (lambda: torch.autocast("cpu", dtype=torch.bfloat16)) if bf16 else nullcontext
        self.forward = torch.compile(self.upper) if speed.compile else self.upper
        self.train_forward = self.ranks.wrap(self.upper) if self.ranks.distributed else self.forward
        self.lower = LowerBlocks(backbone, lower_blocks, preprocessing, speed, self.autocast)
        self.channels_last = speed.channels_last

        self.train_paths, y_train = train
        val_paths, y_val = val
        self.val_acts, self.yv = self.lower_rows(val_paths), torch.from_numpy(np.asarray(y_val)).long()
        self.cached = None  # without augmentation the lower blocks' output never changes: compute it once
        if augmentation is None and speed.cache_lower:
            self.cached = self.lower_rows(self.train_paths)
        self.y = torch.from_numpy(np.asarray(y_train)).long()
        self.size = len(self.y)

        self.loss, self.val_loss = loss_functions(hp, np.asarray(y_train), head[-1].out_features)
        head_params = list(head.parameters())
        head_ids = {id(p) for p in head_params}
        body_params = [p for p in self.upper.parameters() if id(p) not in head_ids]
        self.optimizer = torch.optim.AdamW(
            [{"params": body_params, "lr": hp.fine_tune_lr}, {"params": head_params, "lr": 10 * hp.fine_tune_lr}],
            weight_decay=hp.weight_decay,
        )
        self.steps_per_epoch = math.ceil(self.size / hp.batch_size)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            warmup_cosine(hp.fine_tune_epochs * self.steps_per_epoch, hp.warmup_epochs * self.steps_per_epoch),
        )
        self.setup_seconds = round(time.perf_counter() - started, 3)

    def lower_rows(self, paths: list) -> torch.Tensor:
        """The lower blocks' activations of `paths`' plain crops; shared out between DDP ranks."""
        acts = self.ranks.gather_rows(lambda rows: self.lower(self.crops([paths[i] for i in rows])), len(paths))
        return acts.contiguous(memory_format=torch.channels_last) if self.channels_last else acts

    def activations(self, epoch: int) -> torch.Tensor:
        """The frozen blocks' output for this epoch's training crops (the cached one without augmentation)."""
        if self.cached is not None:
            return self.cached
        transform = None
        if self.augmentation is not None:  # fresh augmented crops every epoch, seeded per (image, epoch)
            augmentation, preprocessing, seed = self.augmentation, self.preprocessing, self.hp.seed
            transform = lambda image, h: augmentation(image, preprocessing, rng_for(seed, h, 1000 + epoch))  # noqa: E731
        return self.lower(self.crops(self.train_paths, transform))

    def crops(self, paths: list, transform=None) -> np.ndarray:
        """Every one of `paths`' crops, in order: one missing would shift every label after it."""
        crops, ok = load_crops(paths, self.preprocessing, transform)
        require_unchanged(paths, ok)
        return crops

    def start_epoch(self, epoch: int) -> None:
        """Training mode with BatchNorm frozen, and this epoch's activations."""
        self.upper.train()
        freeze_batchnorm(self.upper)
        self.acts = self.activations(epoch)

    def step(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One optimiser step on this rank's part of `batch`."""
        batch = self.ranks.batch(batch)  # this rank's part of the global batch
        with self.autocast():
            logits = self.train_forward(self.acts[batch]).float()
        loss = self.loss(logits, self.y[batch])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.upper.parameters(), self.hp.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        return loss, logits, self.y[batch]

    def validate(self) -> tuple[float, float]:
        """Validation loss and accuracy."""
        self.upper.eval()
        with torch.no_grad(), self.autocast():
            logits = torch.cat(
                [self.forward(self.val_acts[i : i + 128]).float() for i in range(0, len(self.val_acts), 128)]
            )
        return self.val_loss(logits, self.yv).item(), (logits.argmax(1) == self.yv).float().mean().item()

    def weights(self) -> dict:
        """The backbone's and the head's tensors."""
        return {"backbone": self.backbone.state_dict(), "head": self.head.state_dict()}

    def load_weights(self, weights: dict) -> None:
        """Restore `weights()`' tensors."""
        self.backbone.load_state_dict(weights["backbone"])
        self.head.load_state_dict(weights["head"])

    def state(self) -> dict:
        """Optimiser and schedule state."""
        return {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state(self, state: dict) -> None:
        """Restore `state()`."""
        optimizer = dict(state["optimizer"])
        optimizer["state"] = {int(k): v for k, v in optimizer["state"].items()}  # JSON made the keys strings
        self.optimizer.load_state_dict(optimizer)
        self.scheduler.load_state_dict(state["scheduler"])


def fine_tune(
    stage: FineTuneStage,
    events: EventBus | None = None,
    on_epoch: Callable[[EpochSnapshot], None] | None = None,
    resume: EpochSnapshot | None = None,
) -> tuple[nn.Module, nn.Module, History]:
    """Fine-tune `stage`'s top blocks and head; returns (backbone, head, history), best weights restored.

    The stage-1 model is epoch 0: it is kept unless an epoch beats its validation loss.
    `on_epoch(snapshot)` gets the full training state after every epoch (checkpoints); `resume`
    restores such a snapshot and continues from there.
    """
    started = time.perf_counter()
    generator = seed_everything(stage.hp.seed + 1)
    start_loss, start_accuracy = stage.validate()
    history = History(
        steps_per_epoch=stage.steps_per_epoch,
        start_val_loss=start_loss,
        start_val_accuracy=start_accuracy,
        setup_seconds=stage.setup_seconds,
    )
    history = fit_epochs(stage, history, generator, events, start_loss=start_loss, on_epoch=on_epoch, resume=resume)
    backbone, head = stage.backbone, stage.head
    backbone.to(memory_format=torch.contiguous_format)
    for p in backbone.parameters():
        p.requires_grad_(False)
    history.seconds = time.perf_counter() - started + stage.setup_seconds
    return backbone.eval(), head.eval(), history
