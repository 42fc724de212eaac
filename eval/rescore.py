"""Recompute the metrics of an evaluation from its map store, without the model.

`python -m eval.rescore results/NAME [--out DIR] [--calibration results/OTHER] [key=value ...]`
The options start from the run's own config (results/NAME/config.yaml, an `eval.run` EvalConfig), so with no
overrides the metrics.json written is identical to the run's. Overrides are EvalConfig keys, the metric options under
`metrics.` (e.g. `metrics.tau=0.3338` for a fixed universal threshold, `metrics.tau_quantile=0.5`); `calibration`
names another results folder whose stored negative maxima give tau_U (e.g. the VGG-SS run, for IS3 / S4). The new
metrics.json, tables and figures go to --out (default: the results folder, whose config.yaml is then updated so the
folder stays consistent). metrics.json is written atomically, and only from a store marked complete.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from eval.config import RESULT_FILES, SCORE_FILES, EvalConfig
from eval.errors import EvalError
from eval.report import Result, report_results
from eval.score import jsonable
from eval.scoring import score_store
from eval.store import read_store
from pipeline.common.atomic import atomic_write_json
from pipeline.common.cli import Parser, run_cli
from pipeline.common.config import load_config, save_config
from pipeline.common.outputs import build_aside, replacing, writer_lock


def score_into(results: Path, cfg, out: Path, store_beside: bool) -> None:
    """Score the store in `results` and write config.yaml, metrics.json, tables and figures into the folder `out`
    (the store is read, and checked, once for all of them). metrics.json names the store unless it will sit beside it
    (`store_beside`: `out` stages files that go into `results`)."""
    store = read_store(results / "maps.zarr")
    info = score_store(store, cfg)
    save_config(cfg, out / "config.yaml")
    if not store_beside:
        info["store"] = str((results / "maps.zarr").resolve())   # the figures read the maps from there
    info = jsonable(info)                                       # standard JSON: NaN -> null
    atomic_write_json(out / "metrics.json", info)
    report_results([Result(results, info, store)], out)


def rescore(results: str | Path, cfg=None, out: str | Path | None = None) -> Path:
    """Score the store in `results` (config: `cfg`, default the run's config.yaml) into `out` (default `results`).

    Nothing is replaced unless everything was computed: the new files are built in a staging folder and swapped in
    (pipeline.common.outputs); in place, the store itself is kept and only read."""
    results = Path(results)
    if cfg is None:
        cfg = load_config(EvalConfig, results / "config.yaml")
    out = Path(out) if out is not None else results
    if out.exists() and out.resolve() == results.resolve():    # in place: the store stays, the rest is replaced
        with writer_lock(out), build_aside(out, SCORE_FILES) as stage:
            score_into(results, cfg, stage, store_beside=True)
    else:
        with replacing(out, RESULT_FILES) as stage:
            score_into(results, cfg, stage, store_beside=False)
    return out / "metrics.json"


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m eval.rescore",
                description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("results", help="a results folder written by eval.run")
    ap.add_argument("--out", help="where to write (default: the results folder)")
    ap.add_argument("--calibration", help="results folder whose negative maxima set tau_U")
    ap.add_argument("overrides", nargs="*", help="key=value EvalConfig options (metrics.* for the metrics)")
    args = ap.parse_intermixed_args(argv)
    results = Path(args.results)
    if not (results / "config.yaml").is_file():
        raise EvalError(f"{results}: no config.yaml (not an eval.run results folder)")
    cfg = load_config(EvalConfig, results / "config.yaml", args.overrides)
    if args.calibration is not None:
        cfg = dataclasses.replace(cfg, calibration=args.calibration)
    print(f"wrote {rescore(results, cfg, args.out)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
