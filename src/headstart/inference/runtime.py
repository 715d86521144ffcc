"""Running networks fast on a CPU: onnxruntime sessions, ONNX export, batching and worker threads."""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..fsutil import cache_file, default_mode

if TYPE_CHECKING:
    from torch import nn

# Images per onnxruntime call. Throughput is flat from 8 to 32 here (MobileNetV2: 215, 214, 212
# images/s) but the session's memory arena grows with the batch: 185, 284 and 480 MB peak.
BATCH_SIZE = 8
DECODE_AHEAD = 64  # decoded crops waiting for the backbone, at most: keeps both cores busy, memory flat


def num_threads() -> int:
    """CPU cores this process may use: its share when torchrun started several on this machine."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))


def export_onnx(module: nn.Module, path: Path, image_size: int, output_name: str = "features") -> None:
    """Export `module` (uint8 images -> one tensor) to ONNX with a dynamic batch axis, atomically."""
    import torch

    module = module.eval()
    example = torch.zeros(1, image_size, image_size, 3, dtype=torch.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            # The TorchScript exporter takes ~1 s here against ~13 s for the dynamo one, same graph speed.
            torch.onnx.export(
                module,
                (example,),
                tmp,
                input_names=["images"],
                output_names=[output_name],
                dynamic_axes={"images": {0: "batch"}, output_name: {0: "batch"}},
                opset_version=17,
                dynamo=False,
            )
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        module.eval()  # the exporter restores the wrapper's *previous* mode recursively; make sure it is eval


def ort_session(model: Path | bytes, spinning: bool = False, threads: int | None = None):
    """An onnxruntime session on an ONNX file (or its bytes), on all cores unless `threads` says
    otherwise, and on the GPU where onnxruntime-gpu has one. Spinning (busy-waiting) workers cut
    single-image latency (4.8 vs 5.7 ms p50 here) but slow the decode pipeline by ~9%, so it is off
    by default."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options, providers=providers())


def providers() -> list[str]:
    """onnxruntime's execution providers, best first: CUDA where onnxruntime-gpu sees a GPU, else the CPU."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available] or available


def cached_onnx(
    name: str,
    module: Callable[[], nn.Module],
    image_size: int,
    output_name: str = "features",
    root: Path | None = None,
) -> Path:
    """The ONNX file of the network `module()` builds, exported once to the cache's onnx/ folder (a
    private temporary folder when the cache can't be written). The network (and torch) is built
    only when the file is not there."""
    path = cache_file("onnx", name, root)
    if not path.exists():
        export_onnx(module(), path, image_size, output_name)
    return path


def cached_session(
    name: str,
    module: Callable[[], nn.Module],
    image_size: int,
    output_name: str = "features",
    root: Path | None = None,
):
    """A session on `cached_onnx(...)`; a damaged cached file (a power cut mid-write) is exported again."""
    path = cached_onnx(name, module, image_size, output_name, root)
    try:
        return ort_session(path)
    except Exception:  # onnxruntime raises its own exception types for a damaged file
        path.unlink(missing_ok=True)
    return ort_session(cached_onnx(name, module, image_size, output_name, root))


def onnx_runner(path: Path, spinning: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """A function running an ONNX file whose one input is `images` on a batch."""
    session = ort_session(path, spinning)
    return lambda batch: session.run(None, {"images": batch})[0]


def numpy_state(state) -> dict[str, np.ndarray]:
    """A module's (or a state dict's) tensors as numpy arrays, names unchanged."""
    state = state.state_dict() if hasattr(state, "state_dict") else state
    return {name: v if isinstance(v, np.ndarray) else v.detach().cpu().numpy() for name, v in state.items()}


def state_fingerprint(state) -> str:
    """A short hash of a module's weights (or of its numpy state, the same hash): tells a
    fine-tuned backbone from another."""
    digest = hashlib.sha256()
    for name, array in sorted(numpy_state(state).items()):
        digest.update(name.encode())
        digest.update(array.tobytes())
    return digest.hexdigest()[:16]


def run_batched(infer: Callable[[np.ndarray], np.ndarray], crops: np.ndarray, size: int = BATCH_SIZE) -> np.ndarray:
    """`infer` over `crops` in batches of `size`, outputs concatenated."""
    return np.concatenate([infer(crops[i : i + size]) for i in range(0, len(crops), size)])


def bounded_map(pool: ThreadPoolExecutor, fn: Callable, items: Iterable, window: int) -> Iterator:
    """Like pool.map, in order, but with at most `window` results pending at a time."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= window:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()
