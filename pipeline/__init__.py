"""Data pipeline: synthetic VGGSound-like corpus, media decoding, sharding, features and loaders."""
