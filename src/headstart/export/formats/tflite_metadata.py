"""TFLite model metadata, the flatbuffer MediaPipe Tasks reads (labels, the input's value range),
written with MediaPipe's own writer (`mediapipe.tasks.python.metadata.metadata_writers`), as
Model Maker writes it. `ImageClassifier` then names headstart's classes and feeds uint8 pixels.
"""

from __future__ import annotations

import contextlib
import io
import sys
import types

from ._quiet import logger_quieted

# mediapipe >= 0.10.30 wheels (1.2.2 and 1.2.3 included) import a compiled module they no longer
# ship, `_pywrap_metadata_version`, from the writer; its one function gives the oldest metadata
# parser that reads a file, by the schema features the file uses (metadata_schema.fbs's history).
_MISSING = "mediapipe.tasks.cc.metadata.python._pywrap_metadata_version"
FEATURE_VERSIONS = (  # (version, is the feature used by this ModelMetadataT?)
    ("1.5.0", lambda m: any(s.customMetadata for s in m.subgraphMetadata or [])),
    ("1.4.1", lambda m: any(f.version for f in _associated_files(m))),
    ("1.4.0", lambda m: any(f.type == 6 for f in _associated_files(m))),  # SCANN_INDEX_FILE
    ("1.3.0", lambda m: any(_content_type(t) == 3 for t in _tensors(m))),  # AudioProperties
    ("1.2.0", lambda m: any(s.inputTensorGroups or s.outputTensorGroups for s in m.subgraphMetadata or [])),
    ("1.1.0", lambda m: any(s.inputProcessUnits or s.outputProcessUnits for s in m.subgraphMetadata or [])),
    ("1.0.1", lambda m: any(f.type == 5 for f in _associated_files(m))),  # VOCABULARY
)


def _tensors(metadata) -> list:
    subgraphs = metadata.subgraphMetadata or []
    return [t for s in subgraphs for t in (s.inputTensorMetadata or []) + (s.outputTensorMetadata or [])]


def _associated_files(metadata) -> list:
    owners = [metadata, *(metadata.subgraphMetadata or []), *_tensors(metadata)]
    return [f for owner in owners for f in (owner.associatedFiles or [])]


def _content_type(tensor) -> int:
    return tensor.content.contentPropertiesType if tensor.content else 0


def minimum_parser_version(metadata_buffer: bytes) -> str:
    """The oldest metadata parser that reads this metadata (what the missing module computed)."""
    from mediapipe.tasks.metadata import metadata_schema_py_generated as schema

    metadata = schema.ModelMetadataT.InitFromObj(schema.ModelMetadata.GetRootAsModelMetadata(metadata_buffer, 0))
    return next((version for version, used in FEATURE_VERSIONS if used(metadata)), "1.0.0")


def _provide_missing_module() -> None:
    try:
        __import__(_MISSING)
    except ImportError:
        parts = _MISSING.split(".")
        for depth in range(3, len(parts)):  # mediapipe.tasks.cc, ...metadata, ...python
            sys.modules.setdefault(".".join(parts[:depth]), types.ModuleType(".".join(parts[:depth])))
        module = types.ModuleType(_MISSING)
        module.GetMinimumMetadataParserVersion = minimum_parser_version
        sys.modules[_MISSING] = module


def inline_buffers(model: bytes) -> bytes:
    """`model` with every weight buffer inside the flatbuffer. ai-edge-quantizer writes them after
    it (offset and size fields), which the metadata writer, rebuilding the flatbuffer, would drop."""
    import flatbuffers
    import numpy as np
    from mediapipe.tasks.metadata import schema_py_generated as schema

    tree = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    external = [b for b in tree.buffers or [] if b.offset > 1]
    if not external:
        return model
    for buffer in external:
        buffer.data = np.frombuffer(model, np.uint8, buffer.size, buffer.offset)
        buffer.offset = buffer.size = 0
    builder = flatbuffers.Builder(len(model) + 1024)
    builder.Finish(tree.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def with_image_classifier_metadata(model: bytes, labels: list[str], description: str) -> bytes:
    """`model` (uint8 NHWC in, probabilities out) with MediaPipe's image-classifier metadata:
    the labels as the output's label file, and mean 0 / std 1 on the input (MediaPipe gives a uint8
    input its 0-255 pixels as they are; the model normalises them itself)."""
    _provide_missing_module()
    from mediapipe.tasks.python.metadata.metadata_writers import metadata_writer

    # What image_classifier.MetadataWriter.create does, with headstart's description (the crop).
    writer = metadata_writer.MetadataWriter(bytearray(inline_buffers(model)))
    writer.add_general_info("ImageClassifier", description)
    writer.add_image_input([0.0], [1.0])
    writer.add_classification_output(metadata_writer.Labels().add(labels))
    with contextlib.redirect_stderr(io.StringIO()), logger_quieted("absl"):
        written, _ = writer.populate()
    del writer  # its __del__ removes its temporary folder; at interpreter exit it would fail noisily
    return bytes(written)
