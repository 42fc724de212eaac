"""`python -m pipeline.bench`: see pipeline.bench.cli."""
from pipeline.bench.cli import main
from pipeline.common.cli import run_cli

if __name__ == "__main__":
    raise SystemExit(run_cli(main))
