"""Export formats and their file suffixes, importable without torch (the CLI lists them at start-up)."""

SUFFIX = {
    "onnx": ".onnx",
    "onnx-int8": ".int8.onnx",
    "tflite": ".tflite",
    "tflite-int8": ".int8.tflite",
    "torch-export": ".pt2",
}
FORMATS = tuple(SUFFIX)
