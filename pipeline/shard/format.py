"""What a shard holds, shared by the sharder that writes shards and the loaders that read them: the member
extensions of a sample and `ShardError`, the one error for a shard folder, file or sharding option that cannot be
used (docs/ARCHITECTURE.md section 2 has the whole format)."""
from __future__ import annotations

from pipeline.common.cli import UserError

IMAGE_EXT = "jpg"              # the centre frame; with frames > 1 also `frame{k}.jpg`
META_EXT = "json"
CLASS_EXT = "cls"
AUDIO_EXTS = ("flac", "wav")
SAMPLE_RATE = 16000            # every clip's audio: mono at this rate


class ShardError(UserError, ValueError):
    """A shard folder, shard file or sharding option that cannot be used; the message names the file and the
    problem."""
