"""`PredictionFile`: predictions written to a CSV or Parquet file chunk by chunk, as they arrive
(`headstart predict --out`, locally or from Ray), appearing whole when closed, never half."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ..display import printable
from ..errors import HeadstartError
from ..fsutil import remove_stale_staging, staging_prefix
from .predictor import Predictions

SUFFIXES = (".csv", ".parquet")


class PredictionFile:
    """Predictions written to `path` (.csv: `headstart predict --format csv`'s columns, file names
    in their original bytes; .parquet: path (non-UTF-8 bytes as \\xNN), path_bytes (the exact
    name), label, probability, top_labels, top_probabilities and probabilities in class order,
    named in the file's metadata) chunk by chunk; the file appears whole when closed, never half."""

    def __init__(self, path: str | Path, classes: list[str], top_k: int = 3, overwrite: bool = False):
        self.path, self.classes, self.top_k = Path(path), list(classes), max(1, min(top_k, len(classes)))
        if self.path.suffix.lower() not in SUFFIXES:
            raise HeadstartError(f"{self.path}: predictions are written as .csv or .parquet")
        if self.path.exists() and not overwrite:
            raise HeadstartError(f"{self.path}: exists; choose another --out or add --force")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(self.path)  # a killed run's partial file
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=staging_prefix(self.path), suffix=".tmp")
        os.close(fd)
        self.rows = 0
        self._header_written = False
        self._csv = self._parquet = None
        if self.path.suffix.lower() == ".csv":
            self._csv = open(self.tmp, "w", newline="", encoding="utf-8", errors="surrogateescape")
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            self.schema = pa.schema(
                [
                    ("path", pa.string()),
                    ("path_bytes", pa.binary()),
                    ("label", pa.string()),
                    ("probability", pa.float32()),
                    ("top_labels", pa.list_(pa.string())),
                    ("top_probabilities", pa.list_(pa.float32())),
                    ("probabilities", pa.list_(pa.float32())),
                ],
                metadata={"headstart.classes": "\n".join(self.classes)},
            )
            self._parquet = pq.ParquetWriter(self.tmp, self.schema, compression="zstd")

    def write(self, predictions: Predictions) -> None:
        """Append a chunk of predictions."""
        if self._csv is not None:
            predictions.write_csv(self._csv, header=not self._header_written)
            self._header_written = True
        elif len(predictions):
            import pyarrow as pa

            top = [p.top(self.top_k) for p in predictions]
            columns = {
                "path": [printable(str(p.path)) for p in predictions],  # Arrow strings are UTF-8
                "path_bytes": [os.fsencode(p.path) for p in predictions],  # the exact name
                "label": predictions.labels,
                "probability": [p.probability for p in predictions],
                "top_labels": [[label for label, _ in t] for t in top],
                "top_probabilities": [[prob for _, prob in t] for t in top],
                "probabilities": [[p.probabilities[c] for c in self.classes] for p in predictions],
            }
            self._parquet.write_table(pa.table(columns, schema=self.schema))
        self.rows += len(predictions)

    def close(self, keep: bool = True) -> None:
        """Finish the file: in place if `keep`, else removed."""
        for handle in (self._csv, self._parquet):
            if handle is not None:
                handle.close()
        if keep:
            os.replace(self.tmp, self.path)
        else:
            Path(self.tmp).unlink(missing_ok=True)

    def __enter__(self) -> PredictionFile:
        return self

    def __exit__(self, kind, *_) -> None:
        self.close(keep=kind is None)
