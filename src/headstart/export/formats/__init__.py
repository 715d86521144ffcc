"""The built-in export formats, one module per runtime family; each registers its formats when imported."""
