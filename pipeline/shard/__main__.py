"""`python -m pipeline.shard`: see pipeline.shard.cli."""
from pipeline.common.cli import run_cli
from pipeline.shard.cli import main

if __name__ == "__main__":
    raise SystemExit(run_cli(main))
