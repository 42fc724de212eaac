"""The sharder (`python -m pipeline.shard`): a VGGSound folder into WebDataset tars + DALI indexes, every input
accounted for. Modules: `cli` (the command), `sharder` (plan, write, resume), `work` (the worker pool), `media`
(decoding and encoding one clip), `listing` (the csv, list files and input layouts), `manifest` (merging the parts),
`format` (what a shard holds: shared with the loaders)."""
