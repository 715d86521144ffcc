"""Frozen-backbone features: computed once per image (onnxruntime fast path), cached on disk.

The cache key is the image's content hash plus the backbone, its weights and the preprocessing,
so renaming or moving files costs nothing and a changed recipe never reuses stale features.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import tempfile
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from .backbones import BackboneSpec
from .data.images import ImageDecodeError, decode
from .errors import HeadstartError
from .fsutil import atomic_write_bytes, default_mode
from .preprocessing import Normalize, Preprocessing
from .progress import progress_bar

if TYPE_CHECKING:
    from PIL import Image

BATCH_SIZE = 32


def cache_root() -> Path:
    """HEADSTART_CACHE, else $XDG_CACHE_HOME/headstart, else ~/.cache/headstart."""
    if env := os.environ.get("HEADSTART_CACHE"):
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "headstart"


def num_threads() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class FeatureCache:
    """One float32 .npy per (image content, backbone recipe); writes are atomic, reads never unpickle."""

    def __init__(self, root: Path, key: str):
        self.dir = Path(root) / "features" / key

    def _path(self, content_hash: str) -> Path:
        return self.dir / content_hash[:2] / f"{content_hash}.npy"

    def get(self, content_hash: str) -> np.ndarray | None:
        path = self._path(content_hash)
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            return None  # missing or damaged: recompute

    def put(self, content_hash: str, features: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(features, dtype=np.float32), allow_pickle=False)
        atomic_write_bytes(self._path(content_hash), buf.getvalue())


class FeatureNet(nn.Module):
    """The export/inference graph: uint8 (N, H, W, 3) images in, pooled features out."""

    def __init__(self, backbone: nn.Module, preprocessing: Preprocessing):
        super().__init__()
        self.normalize = Normalize(preprocessing)
        self.backbone = backbone

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(self.normalize(images))


def export_onnx(module: nn.Module, path: Path, image_size: int, output_name: str = "features") -> None:
    """Export `module` (images -> one tensor) to ONNX with a dynamic batch axis, atomically."""
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
                module, (example,), tmp, input_names=["images"], output_names=[output_name],
                dynamic_axes={"images": {0: "batch"}, output_name: {0: "batch"}}, opset_version=17, dynamo=False,
            )
        os.chmod(tmp, default_mode())
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
        module.eval()  # the exporter restores the wrapper's *previous* mode recursively; make sure it is eval


def ort_session(path: Path, spinning: bool = False):
    """An onnxruntime CPU session on all cores. Spinning (busy-waiting) workers cut single-image
    latency (4.8 vs 5.7 ms p50 here) but slow the decode pipeline by ~9%, so it is off by default."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = num_threads()
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def state_fingerprint(module: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


@dataclass
class Extraction:
    """Features of the readable images, in input order, and why the others were left out."""

    features: np.ndarray  # (n_ok, feature_dim) float32
    ok: list[int]  # indices into the input paths
    failures: dict[Path, str] = field(default_factory=dict)
    hashes: list[str] = field(default_factory=list)  # content sha256 of each ok image
    computed: int = 0  # images that went through the backbone (the rest came from the cache)


class FeatureExtractor:
    """Images -> backbone features, with onnxruntime (default) or eager PyTorch.

    `backbone` is the network to run: the spec's pretrained one unless a fine-tuned copy is given.
    """

    def __init__(
        self,
        spec: BackboneSpec,
        weights: str | Path | None = None,
        backbone: nn.Module | None = None,
        engine: str = "auto",
        preprocessing: Preprocessing | None = None,
        cache_dir: Path | None = None,
    ):
        if engine not in ("auto", "onnxruntime", "torch"):
            raise HeadstartError(f"unknown engine {engine!r}: use auto, onnxruntime or torch")
        self.spec = spec
        self.preprocessing = preprocessing or spec.preprocessing
        self.cache_root = Path(cache_dir) if cache_dir else cache_root()
        self._weights = weights
        self._backbone = backbone.eval() if backbone is not None else None
        # Pretrained: the weights file's hash; fine-tuned: a hash of the tuned tensors.
        weights_sha = spec.weights.sha256 if backbone is None else state_fingerprint(backbone)
        self.model_id = f"{spec.name}-{weights_sha[:16]}"
        self.engine = engine
        self._session = None

    @property
    def cache_key(self) -> str:
        return f"{self.model_id}-{self.preprocessing.fingerprint}"

    def cache(self) -> FeatureCache:
        return FeatureCache(self.cache_root, self.cache_key)

    @property
    def backbone(self) -> nn.Module:
        if self._backbone is None:
            self._backbone = self.spec.create(self._weights)
        return self._backbone

    def _onnx_session(self):
        if self._session is None:
            path = self.cache_root / "onnx" / f"{self.model_id}-{self.preprocessing.fingerprint}-u8.onnx"
            if not path.exists():
                export_onnx(FeatureNet(self.backbone, self.preprocessing), path, self.preprocessing.image_size)
            self._session = ort_session(path)
        return self._session

    def resolved_engine(self) -> str:
        if self.engine != "auto":
            return self.engine
        return "onnxruntime" if importlib.util.find_spec("onnxruntime") else "torch"

    def embed(self, batch: np.ndarray) -> np.ndarray:
        """Cropped uint8 images (N, H, W, 3) -> features (N, feature_dim) float32."""
        if self.resolved_engine() == "onnxruntime":
            return self._onnx_session().run(None, {"images": batch})[0]
        with torch.inference_mode():
            return FeatureNet(self.backbone, self.preprocessing)(torch.from_numpy(batch)).numpy()

    def extract(
        self,
        paths: Sequence[Path],
        use_cache: bool = True,
        description: str = "Extracting features",
        quiet: bool = False,
    ) -> Extraction:
        cache = self.cache() if use_cache else None
        return batched_inference(paths, self.preprocessing, self.embed, self.spec.feature_dim, cache, description, quiet)

    def extract_views(self, paths: Sequence[Path], augmentation, views: int, seed: int, quiet: bool = False) -> list[Extraction]:
        """Features of `views` augmented crops of every image, each view cached like plain features."""
        from .augment import rng_for

        out = []
        for view in range(views):
            cache = FeatureCache(self.cache_root, f"{self.cache_key}-aug{augmentation.fingerprint}-s{seed}-v{view}")
            transform = lambda image, h, v=view: augmentation(image, self.preprocessing, rng_for(seed, h, v))  # noqa: E731
            out.append(batched_inference(paths, self.preprocessing, self.embed, self.spec.feature_dim, cache,
                                         f"Augmented view {view + 1}/{views}", quiet, transform))
        return out


Transform = Callable[["Image.Image", str], np.ndarray]  # (RGB image, content sha256) -> uint8 crop


def prepare_image(path: Path, preprocessing: Preprocessing, cache: FeatureCache | None, transform: Transform | None = None):
    """Read, hash and (unless cached) decode one file: runs in worker threads."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        return None, None, None, f"cannot read file ({e.strerror or e})"
    content_hash = hashlib.sha256(data).hexdigest()
    if cache is not None and (hit := cache.get(content_hash)) is not None:
        return content_hash, hit, None, None
    try:
        image = decode(data, min_size=preprocessing.resize_short)
        return content_hash, None, transform(image, content_hash) if transform else preprocessing(image), None
    except ImageDecodeError as e:
        return content_hash, None, None, str(e)


def batched_inference(
    paths: Sequence[Path],
    preprocessing: Preprocessing,
    infer: Callable[[np.ndarray], np.ndarray],
    out_dim: int,
    cache: FeatureCache | None = None,
    description: str = "Extracting features",
    quiet: bool = False,
    transform: Transform | None = None,
) -> Extraction:
    """Decode images on worker threads while `infer` runs on batches of uint8 crops (made by
    `transform`, else the plain preprocessing); cached rows are reused and new ones stored.
    Unreadable files are reported, never fatal."""
    n = len(paths)
    outputs: list[np.ndarray | None] = [None] * n
    hashes: list[str | None] = [None] * n
    failures: dict[Path, str] = {}
    pending_idx: list[int] = []
    pending_arr: list[np.ndarray] = []
    computed = 0

    def flush():
        nonlocal computed
        if not pending_idx:
            return
        for i, row in zip(pending_idx, infer(np.stack(pending_arr))):
            outputs[i] = row
            if cache is not None:
                cache.put(hashes[i], row)
        computed += len(pending_idx)
        pending_idx.clear()
        pending_arr.clear()

    with progress_bar(description, n, quiet) as advance, ThreadPoolExecutor(num_threads()) as pool:
        # Decoding runs ahead of inference on the other core(s), bounded so memory stays flat.
        prepared = bounded_map(pool, lambda p: prepare_image(p, preprocessing, cache, transform), paths, window=4 * BATCH_SIZE)
        for i, (content_hash, hit, array, error) in enumerate(prepared):
            hashes[i] = content_hash
            if error is not None:
                failures[Path(paths[i])] = error
            elif hit is not None:
                outputs[i] = hit
            else:
                pending_idx.append(i)
                pending_arr.append(array)
                if len(pending_idx) == BATCH_SIZE:
                    flush()
            advance()
        flush()
    ok = [i for i in range(n) if outputs[i] is not None]
    stacked = np.stack([outputs[i] for i in ok]).astype(np.float32) if ok else np.zeros((0, out_dim), np.float32)
    return Extraction(stacked, ok, failures, [hashes[i] for i in ok], computed)


def load_crops(paths: Sequence[Path], preprocessing: Preprocessing, transform: Transform | None = None) -> tuple[np.ndarray, list[int]]:
    """The uint8 model inputs (N, H, W, 3) of the readable images, decoded on all cores, and their indices."""
    with ThreadPoolExecutor(num_threads()) as pool:
        prepared = list(bounded_map(pool, lambda p: prepare_image(p, preprocessing, None, transform), paths, window=4 * BATCH_SIZE))
    ok = [i for i, (_, _, array, _) in enumerate(prepared) if array is not None]
    size = preprocessing.image_size
    crops = np.stack([prepared[i][2] for i in ok]) if ok else np.zeros((0, size, size, 3), np.uint8)
    return crops, ok


def run_batched(infer: Callable[[np.ndarray], np.ndarray], crops: np.ndarray, size: int = BATCH_SIZE) -> np.ndarray:
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
