"""A `torch.export` program (`.pt2`) with a dynamic batch axis, for PyTorch runtimes (ExecuTorch,
AOTInductor). Not read back by `headstart.load`: loading one means unpickling its archive."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..registry import ExportFormat, ExportJob, register_export_format

if TYPE_CHECKING:
    import numpy as np


def write_torch_export(job: ExportJob) -> None:
    """Trace the network with `torch.export` (batches of 1 to 4096) and save the program."""
    import torch

    size = job.model.preprocessing.image_size
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        program = torch.export.export(
            job.net.eval(), (torch.zeros(2, size, size, 3, dtype=torch.uint8),), dynamic_shapes=({0: batch},)
        )
    torch.export.save(program, str(job.target))


def torch_export_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    """The saved program, run by PyTorch."""
    import torch

    program = torch.export.load(str(path)).module()

    def run(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return program(torch.from_numpy(batch)).numpy()

    return run


TORCH_RUNTIMES = "PyTorch (torch.export.load), ExecuTorch, AOTInductor"
register_export_format(
    ExportFormat("torch-export", ".pt2", "torch.export", TORCH_RUNTIMES, write_torch_export, torch_export_runner)
)
