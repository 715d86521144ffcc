"""Features of a folder of images as Parquet shards: what `headstart embed` writes, and `train
--features` reads back.

    features/_headstart.json     the recipe (backbone, weights, preprocessing, test-time
                                 augmentation), classes, shard size and image count
    features/part-00000.parquet  path, sha256, label, features (float32 × dim), error;
                                 with --tta flip also `mirrored` (the mirror image's features: the
                                 recipe's features are the mean of the two)

Shards are written whole and atomically, each stamped with a digest of its paths and the recipe:
a rerun of the same job skips the shards already there, so an interrupted job resumes where it
stopped. One process or Ray (`ray=RayOptions(...)`) writes the same files.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..backbones import DEFAULT_BACKBONE, get_backbone
from ..data.labelled import FolderImages
from ..errors import HeadstartError
from ..events import EventBus
from ..fsutil import atomic_write_bytes
from ..inference.features import Extraction, FeatureExtractor, feature_extractor, mirror
from ..options import TTA, RayOptions
from ..progress import event_bus
from . import SHARD_SIZE
from .cluster import INSTALL_HINT, ray_cluster

FORMAT = "headstart-embeddings-v1"
MANIFEST = "_headstart.json"  # "_": Parquet readers (pyarrow, pandas, Spark) skip it when reading the folder
STAMP = b"headstart.shard"  # the Parquet key-value metadata naming what a shard holds


@dataclass
class EmbedResult:
    """What an `embed` job did: shards written and kept, images, failures, seconds."""

    out: Path
    images: int
    shards: int
    written: int  # shards computed by this call
    skipped: int  # shards already there (an earlier, interrupted run)
    failures: dict[Path, str] = field(default_factory=dict)
    seconds: float = 0.0


def recipe(extractor: FeatureExtractor) -> dict:
    """What the features depend on (backbone, weights, preprocessing, test-time augmentation): the manifest's recipe."""
    return {
        "backbone": extractor.spec.name,
        "recipe": extractor.cache_key,
        "feature_dim": extractor.spec.feature_dim,
        "tta": extractor.tta,
        "preprocessing": extractor.preprocessing.to_dict(),
    }


def _digest(paths: Sequence[Path]) -> str:
    return hashlib.sha256("\n".join(map(str, paths)).encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _require_pyarrow():
    try:
        import pyarrow  # noqa: F401
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise HeadstartError(f"Parquet features need pyarrow: {INSTALL_HINT}") from None


class ShardWriter:
    """Writes the shards of one job under `out`, checking an existing manifest first."""

    def __init__(self, out: Path, extractor: FeatureExtractor, images: FolderImages, shard_size: int):
        _require_pyarrow()
        if shard_size < 1:
            raise HeadstartError("--shard-size must be at least 1")
        self.out, self.images, self.shard_size = out, images, shard_size
        self.recipe = recipe(extractor)
        self.dim = extractor.spec.feature_dim
        self.count = -(-len(images.paths) // shard_size)
        manifest = self.recipe | {
            "format": FORMAT,
            "classes": images.classes,
            "shard_size": shard_size,
            "images": len(images.paths),
            "shards": self.count,
            "paths_sha256": _digest(images.paths),
        }
        if out.exists() and not out.is_dir():
            raise HeadstartError(f"{out}: exists and is not a folder; choose another --out")
        path = out / MANIFEST
        if path.exists():
            try:
                old = json.loads(path.read_text())
            except (OSError, ValueError) as e:
                raise HeadstartError(f"{path}: unreadable ({e}); remove {out} or choose another --out") from None
            changed = [k for k in manifest if old.get(k) != manifest[k]]
            if changed:
                raise HeadstartError(
                    f"{out}: holds embeddings of another job ({', '.join(changed)} differ); "
                    "choose another --out, or remove it"
                )
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(manifest, indent=2).encode())

    def span(self, shard: int) -> range:
        """The image indices of shard `shard`."""
        return range(shard * self.shard_size, min((shard + 1) * self.shard_size, len(self.images.paths)))

    def path(self, shard: int) -> Path:
        """The Parquet file of shard `shard`."""
        return self.out / f"part-{shard:05d}.parquet"

    def stamp(self, shard: int) -> str:
        """What a finished shard's metadata says it holds: its paths and the recipe."""
        paths = [self.images.paths[i] for i in self.span(shard)]
        return json.dumps({"shard": shard, "paths_sha256": _digest(paths), "recipe": self.recipe["recipe"]})

    def done(self, shard: int) -> bool:
        """The shard's file is there, whole, and holds exactly these paths with this recipe."""
        import pyarrow.parquet as pq

        try:
            meta = pq.read_metadata(self.path(shard))
        except Exception:  # missing, or a foreign or damaged file (pyarrow's own errors): written again
            return False
        stored = (meta.metadata or {}).get(STAMP)
        return stored is not None and stored.decode() == self.stamp(shard) and meta.num_rows == len(self.span(shard))

    def pending(self) -> list[int]:
        """The shards not written yet (or written for another job)."""
        return [s for s in range(self.count) if not self.done(s)]

    def write(
        self, shard: int, sha256: list[str | None], features: np.ndarray, errors: list[str], mirrored=None
    ) -> None:
        """One shard, rows in its paths' order (NaN feature rows where `errors` says why), atomically."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        span = self.span(shard)
        ok = np.array([not e for e in errors])
        columns = {
            "path": pa.array([str(self.images.paths[i]) for i in span], pa.string()),
            "sha256": pa.array([h or None for h in sha256], pa.string()),
            "label": pa.array([self.images.labels[i] for i in span], pa.string()),
            "features": _vectors(features, ok, self.dim),
            "error": pa.array([e or None for e in errors], pa.string()),
        }
        if mirrored is not None:
            columns["mirrored"] = _vectors(mirrored, ok, self.dim)
        table = pa.table(columns).replace_schema_metadata({STAMP: self.stamp(shard).encode()})
        target = self.path(shard)
        fd, tmp = tempfile.mkstemp(dir=self.out, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, target)
        finally:
            Path(tmp).unlink(missing_ok=True)


def _vectors(rows: np.ndarray, ok: np.ndarray, dim: int):
    import pyarrow as pa

    flat = pa.array(np.ascontiguousarray(rows, np.float32).reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(flat, dim, mask=None if ok.all() else pa.array(~ok))


def embed(
    data: str | Path,
    out: str | Path,
    backbone: str = DEFAULT_BACKBONE,
    tta: TTA = "none",
    ray: RayOptions | None = None,
    shard_size: int = SHARD_SIZE,
    weights: str | Path | None = None,
    on_event=None,
    quiet: bool = False,
) -> EmbedResult:
    """Backbone features of every image of `data` as Parquet shards under `out` (see the module's
    notes); shards already written by an interrupted run of the same job are skipped.

    Args:
        data: a labelled folder (labels recorded) or any folder of images.
        out: the folder to write.
        backbone: a name from `headstart backbones` (ensembles too).
        tta: "flip" also stores each image's mirror-image features.
        ray: run on a Ray cluster, there and that wide (None: in this process).
        shard_size: images per Parquet file.
    """
    started = time.perf_counter()
    events = event_bus(on_event, quiet)
    images = FolderImages.of(data)
    extractor = feature_extractor(get_backbone(backbone), weights, tta=tta)
    writer = ShardWriter(Path(out).expanduser(), extractor, images, shard_size)
    pending = writer.pending()
    total = sum(len(writer.span(s)) for s in pending)
    failures: dict[Path, str] = {}
    with events.stage("embed", total, "images", f"Embedding on {'Ray' if ray else 'this machine'}") as progress:
        if ray is not None:
            _embed_on_ray(writer, extractor, pending, ray, progress, failures)
        else:
            plain = feature_extractor(extractor.spec, weights)  # views apart, as Ray writes (and the cache keeps) them
            for shard in pending:
                paths = [images.paths[i] for i in writer.span(shard)]
                views = [plain.extract(paths, events=events, description=f"Shard {shard + 1}/{writer.count}")]
                if tta == "flip":
                    mirrored = mirror(extractor.preprocessing)
                    views.append(plain.extract(paths, events=events, transform=mirrored, cache_tag="-flip"))
                writer.write(shard, *_rows(views, paths, extractor.spec.feature_dim))
                failures |= {path: why for view in views for path, why in view.failures.items()}
                progress.advance(len(paths), shard=shard)
    return EmbedResult(
        writer.out,
        len(images.paths),
        writer.count,
        len(pending),
        writer.count - len(pending),
        failures,
        round(time.perf_counter() - started, 3),
    )


def _rows(views: list[Extraction], paths: list[Path], dim: int) -> tuple:
    """Local extractions (the plain view, and the mirrored one) as a shard's columns, in path order."""
    n = len(paths)
    sha256: list[str | None] = [None] * n
    columns = [np.full((n, dim), np.nan, np.float32) for _ in views]
    ok = set.intersection(*(set(view.ok) for view in views))
    for view, column in zip(views, columns):
        for row, i in enumerate(view.ok):
            if i in ok:
                sha256[i], column[i] = view.hashes[row], view.features[row]
    failures = {path: why for view in views for path, why in view.failures.items()}
    errors = ["" if i in ok else failures.get(paths[i], "unreadable") for i in range(n)]
    return sha256, columns[0], errors, columns[1] if len(columns) > 1 else None


def _embed_on_ray(writer: ShardWriter, extractor, pending: list[int], options: RayOptions, progress, failures):
    """Ray computes; this process gathers each shard's rows and writes it once whole."""
    from .pipeline import run_on_ray

    index = [i for s in pending for i in writer.span(s)]
    paths = [writer.images.paths[i] for i in index]
    flip = extractor.tta == "flip"
    parts: dict[int, dict[int, tuple]] = {s: {} for s in pending}
    with ray_cluster(options):
        model = extractor.onnx_file("none").read_bytes()
        for batch in run_on_ray(paths, model, extractor.preprocessing, options, mirror=flip):
            for k, job_row in enumerate(batch.index):
                i = index[job_row]
                shard = i // writer.shard_size
                mirrored = batch.mirrored[k] if flip else None
                sha256 = None if batch.error[k] else batch.sha256[k]  # as a local run writes it: rows that were read
                parts[shard][i] = (sha256, batch.outputs[k], batch.error[k], mirrored)
                if batch.error[k]:
                    failures[writer.images.paths[i]] = batch.error[k]
                if len(parts[shard]) == len(writer.span(shard)):
                    _write_gathered(writer, shard, parts.pop(shard), flip)
            progress.advance(len(batch.index))


def _write_gathered(writer: ShardWriter, shard: int, rows: dict[int, tuple], flip: bool) -> None:
    ordered = [rows[i] for i in writer.span(shard)]
    mirrored = np.stack([r[3] for r in ordered]) if flip else None
    writer.write(shard, [r[0] for r in ordered], np.stack([r[1] for r in ordered]), [r[2] for r in ordered], mirrored)


def fill_cache(extractor: FeatureExtractor, sha256: list[str], features: np.ndarray, mirrored=None) -> None:
    """Put computed rows into `extractor`'s feature cache (each view in its own), where a local
    extraction then finds them."""
    caches = [(extractor.cache(), features)] + ([(extractor.cache("-flip"), mirrored)] if mirrored is not None else [])
    for cache, rows in caches:
        if cache is None:
            raise HeadstartError(f"{extractor.cache_root}: the feature cache can't be written; Ray's results need it")
        for h, row in zip(sha256, rows):
            cache.put(h, row)


def import_features(folder: str | Path, extractor: FeatureExtractor) -> int:
    """Put the features `headstart embed` wrote under `folder` into `extractor`'s cache (they must
    come from the same recipe); returns the number of images imported."""
    _require_pyarrow()
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    folder = Path(folder).expanduser()
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        why = "no such folder" if not folder.is_dir() else f"{MANIFEST}: {getattr(e, 'strerror', None) or e}"
        raise HeadstartError(f"{folder}: not a folder `headstart embed` wrote ({why})") from None
    want = recipe(extractor)
    if manifest.get("recipe") != want["recipe"]:
        raise HeadstartError(
            f"{folder}: embedded with {manifest.get('backbone')} ({manifest.get('recipe')}), but this run uses "
            f"{want['backbone']} ({want['recipe']}); embed again with the same --backbone and weights"
        )
    flip = extractor.tta == "flip"
    if flip and manifest.get("tta") != "flip":
        raise HeadstartError(f"{folder}: embedded without --tta flip, which this run uses; embed with --tta flip")
    imported = 0
    for path in sorted(folder.glob("part-*.parquet")):
        columns = ["sha256", "features"] + (["mirrored"] if flip else [])
        table = pq.read_table(path, columns=columns)
        table = table.filter(pc.is_valid(table["features"]))  # unreadable images have none
        rows = {name: _matrix(table[name], extractor.spec.feature_dim) for name in columns[1:]}
        fill_cache(extractor, table["sha256"].to_pylist(), rows["features"], rows.get("mirrored"))
        imported += table.num_rows
    return imported


def _matrix(column, dim: int) -> np.ndarray:
    return column.combine_chunks().flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)


def extract_on_ray(extractor: FeatureExtractor, paths: Sequence[Path], options: RayOptions, events: EventBus) -> int:
    """Compute on Ray the features of the images in `paths` that `extractor`'s cache lacks and
    cache them: the local extraction that follows reads them all from there. Returns how many."""
    from ..inference.pipeline import hash_files
    from .pipeline import run_on_ray

    flip = extractor.tta == "flip"
    caches = [extractor.cache()] + ([extractor.cache("-flip")] if flip else [])
    hashes = hash_files(paths, extractor.cache_root)
    missing = [p for p, h in zip(paths, hashes) if h is None or any(c is None or not c.has(h) for c in caches)]
    if not missing:
        return 0
    with events.stage("extract", len(missing), "images", "Extracting features on Ray") as progress:
        with ray_cluster(options):
            model = extractor.onnx_file("none").read_bytes()
            for batch in run_on_ray(missing, model, extractor.preprocessing, options, mirror=flip):
                ok = [k for k, e in enumerate(batch.error) if not e]
                mirrored = batch.mirrored[ok] if flip else None
                fill_cache(extractor, [batch.sha256[k] for k in ok], batch.outputs[ok], mirrored)
                progress.advance(len(batch.index))
    return len(missing)
