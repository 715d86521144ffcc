"""What the studio's page offers, read from the registries and `HParams` (served at
`/api/options`), so the page lists every backbone, export format and figure there is, with the
same limits the API checks."""

from __future__ import annotations

from ..backbones import BACKBONES, DEFAULT_BACKBONE
from ..evaluation.figures import REPORT_FIGURES
from ..export import EXPORT_FORMATS
from ..hparams import settings_model

# The settings the page's form offers; every other HParams field keeps its default.
TRAIN_SETTINGS = ("epochs", "backbone", "augment", "views", "fine_tune", "hidden")
TrainSettings = settings_model(TRAIN_SETTINGS, title="TrainSettings")
# Fixed for every studio run: each recording (and any near-copies) lands wholly in one split, so
# the accuracy shown is on captures the model never saw, not on the next frame of a hold it trained on.
STUDIO_HPARAMS = {"group_by": "auto"}


def page_options() -> dict:
    """Backbones, export formats, the report's figures and the training form's fields (JSON Schema)."""
    return {
        "backbones": [spec.describe() for spec in BACKBONES.values()],
        "default_backbone": DEFAULT_BACKBONE,
        "export_formats": [fmt.describe() for fmt in EXPORT_FORMATS.values()],
        "figures": [{"name": f.name, "section": f.section, "alt": f.alt} for f in REPORT_FIGURES.values()],
        "settings": TrainSettings.model_json_schema(),
    }
