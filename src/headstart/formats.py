"""File names headstart writes: export formats and their suffixes, and the report's files.
Importable without torch (the CLI lists the formats at start-up)."""

SUFFIX = {
    "onnx": ".onnx",
    "onnx-int8": ".int8.onnx",
    "tflite": ".tflite",
    "tflite-int8": ".int8.tflite",
    "torch-export": ".pt2",
}
FORMATS = tuple(SUFFIX)

REPORT_FIGURES = ("curves", "confusion", "calibration", "mistakes", "embedding", "dataset", "samples")
REPORT_FILES = ("report.html", "per_class.csv", *(f"{name}.png" for name in REPORT_FIGURES))
REPORT_MARKER = '<meta name="generator" content="headstart">'  # how a report.html headstart wrote is recognised
