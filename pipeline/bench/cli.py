"""`python -m pipeline.bench shard|load [options]`: the data pipeline's benchmarks, one subcommand each.

- `shard`: sharding throughput for 1, 2, ... workers and one or more audio formats (`pipeline.bench.shard`).
- `load`: samples/s of the DALI loader, the reference loader and SSL-TIE's per-file baseline on the same clips and
  augmentations (`pipeline.bench.load`).
Each subcommand prints its report as JSON (and writes it to `--json FILE` where it has that option).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from pipeline.bench.shard import bench_shard, shard_options
from pipeline.common.atomic import atomic_write_json
from pipeline.common.cli import Parser


# The loader benchmark is imported when used, not with this module: the sharder's worker processes (forkserver)
# re-import the main module, and torch (which the loader benchmark needs) would add seconds to every worker's start.
def _load_options(p: argparse.ArgumentParser) -> None:
    from pipeline.bench.load import load_options

    load_options(p)


def _bench_load(args: argparse.Namespace) -> dict:
    from pipeline.bench.load import bench_load

    return bench_load(args)


SUBCOMMANDS: dict[str, tuple[Callable[[argparse.ArgumentParser], None], Callable[[argparse.Namespace], dict]]] = {
    "shard": (shard_options, bench_shard),
    "load": (_load_options, _bench_load),
}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="python -m pipeline.bench", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, (add_options, _) in SUBCOMMANDS.items():
        add_options(sub.add_parser(name))
    args = parser.parse_args(argv)
    result = SUBCOMMANDS[args.command][1](args)
    print(json.dumps(result, indent=2))
    if getattr(args, "json", None):
        atomic_write_json(Path(args.json), result)
    return 0
