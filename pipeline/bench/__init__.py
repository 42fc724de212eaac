"""The data pipeline's benchmarks (`python -m pipeline.bench shard|load`): `cli` (the command), `shard` (sharding
throughput), `load` (loader throughput), `baseline` (SSL-TIE's per-file loading, the loader benchmark's baseline)."""
