"""Training on several processes with PyTorch DDP, as `torchrun` launches them:

    torchrun --nproc_per_node 2 -m headstart train DATA --fine-tune 2

Every rank scans the same split and trains the same head (same seed, same result); feature
extraction and the fine-tuning stage's frozen-block activations are shared out between the ranks
and gathered; each fine-tuning step splits the global batch between the ranks and averages their
gradients (DDP), so the optimisation is one process's with the batch spread out. Only rank 0
writes checkpoints, the bundle and the report, and prints. gloo on CPUs, NCCL where every rank
has a GPU.

Teardown: gloo ranks that leave without a barrier and `destroy_process_group()` were seen to abort
(SIGABRT) at interpreter exit; `finish()` does both, and the CLI then exits explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training processes, and the collective steps a run takes
    through it (one process: rank 0 of 1, every step a no-op). A `TrainingRun` gets one from
    `join()` and hands it to the stages that share work out; nothing else touches the process group.
    """

    rank: int = 0
    world: int = 1

    @property
    def leader(self) -> bool:
        """The rank that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """More than one process trains."""
        return self.world > 1

    def share(self, items: list) -> list:
        """This rank's share of `items` (every world-th item, from its rank)."""
        return items[self.rank :: self.world]

    def batch(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's part of a global batch (never empty: DDP needs every rank in every step)."""
        if not self.distributed:
            return batch
        return batch[self.rank :: self.world] if len(batch) >= self.world else batch[:1]

    def barrier(self) -> None:
        """Wait until every rank is here."""
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """`module` with its gradients averaged over the ranks in backward() (itself for one process)."""
        if not self.distributed:
            return module
        from torch import nn

        return nn.parallel.DistributedDataParallel(module, broadcast_buffers=False)

    def gather_rows(self, compute: Callable[[list[int]], torch.Tensor], n: int) -> torch.Tensor:
        """Rows 0..n-1 of a tensor, each rank computing its share (`compute(indices)`), then
        gathered on every rank in order."""
        if not self.distributed:
            return compute(list(range(n)))
        import torch
        import torch.distributed as dist

        mine = self.share(list(range(n)))
        local = compute(mine)
        per_rank = -(-n // self.world)  # all_gather needs equal sizes: pad, then drop the padding
        padded = torch.zeros((per_rank, *local.shape[1:]), dtype=local.dtype)
        padded[: len(local)] = local
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded.contiguous())
        rows = torch.empty((n, *local.shape[1:]), dtype=local.dtype)
        for rank, part in enumerate(parts):
            count = len(range(rank, n, self.world))
            rows[rank :: self.world] = part[:count]
        return rows

    def finish(self, failed: bool = False) -> None:
        """Leave the process group: every rank waits for the others, then it is destroyed. A rank
        that `failed` does not wait (the others may never reach the barrier); it leaves, and
        torchrun stops the rest."""
        if not self.distributed:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            try:
                if not failed:
                    dist.barrier()
            finally:
                dist.destroy_process_group()


def launched() -> bool:
    """Started by torchrun (or another launcher setting WORLD_SIZE) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join() -> Ranks:
    """This process's ranks; joins the process group torchrun described (once per process)."""
    if not launched():
        return Ranks()
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return Ranks(dist.get_rank(), dist.get_world_size())
