"""The plumbing every stage shares: typed configs (`config`), atomic writes (`atomic`), worker processes (`procs`) and
the command-line conventions (`cli`: the user-error type, the parser, `run_cli`).

It imports nothing else of the project (an import-linter contract in pyproject.toml checks it), so the sharder, the
loaders, the trainer and the evaluator all build on it without depending on one another.
"""
