"""The data side of the project, one sub-package per stage and command: `synth` (`python -m pipeline.synth`, the
synthetic corpus), `shard` (`python -m pipeline.shard`, mp4 folders to WebDataset shards), `load` (the DALI and
reference loaders the trainer reads shards with), `bench` (`python -m pipeline.bench shard|load`), and `common`, the
plumbing every stage of the project shares (configs, atomic writes, worker processes, command-line conventions)."""
