"""Exports for every runtime a user ships to, each verified in that runtime against the PyTorch
model right after it is written.

    registry  `ExportFormat` and the registry of formats (`EXPORT_FORMATS`, `register_export_format`)
    formats/  the built-in formats, one module per runtime family (ONNX, TFLite, torch.export)
    run       `export()`: write, verify, place atomically, with a JSON sidecar

Reading the registry loads no converter, no model code and no torch: the CLI lists the formats at
start-up. `export`, `ExportResult` and `verify` load with their module on first use.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .registry import EXPORT_FORMATS, ExportFormat, ExportJob, Runtime, format_of_path, register_export_format

if TYPE_CHECKING:
    from .run import ExportResult, export, verify

_RUN = ("ExportResult", "export", "verify")


def __getattr__(name: str):
    if name in _RUN:
        return getattr(importlib.import_module(".run", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "EXPORT_FORMATS",
    "ExportFormat",
    "ExportJob",
    "ExportResult",
    "export",
    "format_of_path",
    "register_export_format",
    "Runtime",
    "verify",
]
