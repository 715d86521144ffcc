"""Past one process: Ray Data for embedding and batch prediction (`cluster`, `pipeline`,
`embeddings`, `predict`), torchrun DDP for fine-tuning (`ddp`). Ray is an optional extra:
`pip install 'headstart[ray]'`."""

SHARD_SIZE = 2048  # images per Parquet file of `headstart embed`: ~10 MB of MobileNetV2 features, ~10 s of a worker
