"""`python -m pipeline.quality`: see pipeline.quality.report."""
from pipeline.common.cli import run_cli
from pipeline.quality.report import main

if __name__ == "__main__":
    raise SystemExit(run_cli(main))
