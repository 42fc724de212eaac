"""`python -m pipeline.synth`: see pipeline.synth.cli."""
from pipeline.common.cli import run_cli
from pipeline.synth.cli import main

if __name__ == "__main__":
    raise SystemExit(run_cli(main))
