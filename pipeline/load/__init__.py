"""The loaders: shards in, `Batch`es of images and log-mels out, identical between the DALI and the reference backend.
Modules: `contract` (`LoaderConfig`, `Batch`, `LoaderBase`), `build` (`build_loader`), `dali` and `reference` (the
backends), `shards` (the shard list and the per-rank, per-epoch reading plan), `features` (the one log-mel, tiling,
SpecAugment), `augment` (the image transforms), `negatives` (the silence and noise inputs of training and
evaluation)."""
