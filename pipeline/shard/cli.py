"""Shard a VGGSound-like corpus into WebDataset tars + DALI indexes:
`python -m pipeline.shard --src vggsound/ --out DIR`.

Options are `ShardConfig` fields (pipeline.shard.sharder), as flags, from `--config FILE`, or as `key=value`.
`python -m pipeline.shard merge --out DIR` writes manifest.json and failures.jsonl after all parts finished.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from pipeline.common.cli import Parser
from pipeline.common.config import load_config
from pipeline.shard import manifest
from pipeline.shard.screening import Thresholds as T
from pipeline.shard.sharder import ShardConfig, check_something_written, run


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m pipeline.shard", description=__doc__.split("\n\n")[0],
               epilog="`python -m pipeline.shard merge --out DIR` writes the manifest after all parts finished.")
    p.add_argument("--config", help="YAML file of ShardConfig fields")
    p.add_argument("--src", help="corpus folder (vggsound.csv + video/*.mp4, or frames/ + audio/)")
    p.add_argument("--out", help="output folder of shards")
    p.add_argument("--csv", help="the VGGSound csv (default SRC/vggsound.csv)")
    p.add_argument("--list", help="file of clip ids to shard (one a line), e.g. a 144k training list")
    p.add_argument("--split", choices=["train", "test", "all"])
    p.add_argument("--val-fraction", type=float, dest="val_fraction")
    p.add_argument("--seed", type=int)
    p.add_argument("--shard-size", type=int, dest="shard_size")
    p.add_argument("--frame-size", type=int, dest="frame_size")
    p.add_argument("--frames", type=int)
    p.add_argument("--audio-format", choices=["flac", "wav"], dest="audio_format")
    p.add_argument("--jpeg-quality", type=int, dest="jpeg_quality")
    p.add_argument("--min-duration", type=float, dest="min_duration")
    p.add_argument("--layout", choices=["auto", "video", "extracted"])
    p.add_argument("--workers", type=int, help="decoding processes (default: all cores)")
    p.add_argument("--clip-timeout", type=float, dest="clip_timeout",
                   help="seconds without a clip's result before it is recorded as a timeout failure (default 120)")
    p.add_argument("--num-parts", type=int, dest="num_parts", help="split the shards among this many jobs")
    p.add_argument("--part", type=int, help="which part this job writes (0-based)")
    p.add_argument("--exclude", help="leave clips flagged as any of muted, static, clipped, duplicates "
                   "(comma-separated) out of the shards; each is listed in excluded.jsonl with its reasons and figures "
                   "(duplicates: the smallest id of each cluster is kept; this adds a decoding scan before sharding)")
    p.add_argument("--no-quality", dest="quality", action="store_const", const=False,
                   help="do not compute the quality figures (no quality in the JSON, manifest or quality.jsonl)")
    p.add_argument("--silence-dbfs", type=float, dest="silence_dbfs",
                   help=f"RMS level of a silent 100 ms frame (default {T.silence_dbfs:g} dBFS)")
    p.add_argument("--muted-fraction", type=float, dest="muted_fraction",
                   help=f"muted: at least this fraction of the frames silent (default {T.muted_fraction:g})")
    p.add_argument("--static-motion", type=float, dest="static_motion",
                   help="static: no cell of the frames' 32 x 32 luma and 16 x 16 chroma thumbnails changes by this "
                   "many "
                   f"levels between sampled frames (default {T.static_motion:g})")
    p.add_argument("--clipped-fraction", type=float, dest="clipped_fraction",
                   help=f"clipped: at least this fraction of the samples at full scale "
                   f"(default {T.clipped_fraction:g})")
    p.add_argument("--duplicate-image-bits", type=int, dest="duplicate_image_bits",
                   help=f"duplicates: centre-frame hashes within this many of 64 bits "
                   f"(default {T.duplicate_image_bits}) ...")
    p.add_argument("--duplicate-audio-bits", type=int, dest="duplicate_audio_bits",
                   help=f"... and audio hashes within this many of 64 bits (default {T.duplicate_audio_bits})")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("overrides", nargs="*", help="key=value overrides of ShardConfig fields")
    return p


def config_from_args(args: argparse.Namespace) -> ShardConfig:
    cfg = load_config(ShardConfig, args.config, args.overrides)
    flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(ShardConfig)
             if getattr(args, f.name, None) is not None}
    return dataclasses.replace(cfg, **flags)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["merge"]:
        mp = Parser(prog="python -m pipeline.shard merge", description="write manifest.json and failures.jsonl")
        mp.add_argument("--out", required=True)
        print(_counts_line(manifest.merge(Path(mp.parse_args(argv[1:]).out))))
        return 0
    args = _parser().parse_args(argv)
    cfg = config_from_args(args)
    summary = run(cfg, progress=not args.no_progress)
    print(f"part {cfg.part}/{cfg.num_parts}: {summary.shards_written} shards written, {summary.shards_skipped} "
          f"already finished; {summary.written} clips written, {summary.failed} failed, {summary.excluded} excluded")
    if summary.manifest is not None:
        print(_counts_line(summary.manifest))
    check_something_written(cfg, summary)
    return 0


def _counts_line(m: dict) -> str:
    c = m["counts"]
    return (f"manifest: listed {c['listed']} = written {c['written']} + failed {c['failed']} + missing "
            f"{c['missing']} + excluded {c['excluded']}; {len(m['shards'])} shards")
