"""The quality report of a shard folder (`python -m pipeline.quality`)."""
