"""The paper's Table 4 ablation: the seven combinations of the silence/noise switches S, N, L_S, L_N, trained with one
recipe, evaluated with `eval.run` and tabulated by `eval.report` in the paper's layout.

    python -m eval.ablate --config trainer/configs/cpu_demo.yaml --data vggsound/testsets/s4 --testset s4 \
        --out runs/ablation [key=value training overrides ...]

Each row is an ordinary training run (`python -m trainer.train`, or `accelerate launch` with `--processes N`) in
OUT/runs/<row>/, evaluated into OUT/results/<row>/; with `--seeds N` every row is trained with seeds 1..N
(OUT/runs/<row>/seed-<k>/, evaluated into OUT/results/<row>/seed-<k>/) and the report aggregates each row over its
seeds. The table is OUT/report/tables.md (Table 4, plus Tables 1-3 of the same runs). Resumable: a finished
evaluation is kept, an interrupted training resumes from its latest checkpoint.

It sits on top of both stages it drives: it imports the modules it runs (so the import graph, and the architecture
contracts in pyproject.toml, show its arrows to trainer and eval) and runs each in a process of its own; nothing
imports it.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import eval.report as report_module
import eval.run as run_module
import trainer.train as train_module
from pipeline.common.cli import Parser, UserError, run_cli

# (row name, S, N, L_S, L_N) in the order of the paper's Table 4.
ROWS = [
    ("none", False, False, False, False),
    ("S", True, False, False, False),
    ("S_LS", True, False, True, False),
    ("N", False, True, False, False),
    ("N_LN", False, True, False, True),
    ("S_N", True, True, False, False),
    ("S_N_LS_LN", True, True, True, True),
]
SWITCHES = ("san.silence_negative", "san.noise_negative", "san.silence_map_loss", "san.noise_map_loss")


class AblationError(UserError):
    """A step of the ablation failed; the message names the row and the command (exit status 1)."""

    status = 1


def _run(cmd: list[str], what: str) -> None:
    print(f"[ablate] {what}: {' '.join(cmd)}", flush=True)
    if subprocess.run(cmd).returncode != 0:
        raise AblationError(f"{what} failed (command: {' '.join(cmd)})")


def train_command(config: str, out: Path, row: tuple, processes: int, overrides: list[str],
                  seeds: list[int] | None = None) -> list[str]:
    name, *flags = row
    args = ["--config", config, f"name={name}", f"output_root={out / 'runs'}",
            *(f"{key}={str(on).lower()}" for key, on in zip(SWITCHES, flags)), *overrides]
    if seeds:
        args.append(f"seeds=[{','.join(map(str, seeds))}]")
    if processes > 1:
        return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_machines", "1",
                "--num_processes", str(processes), "--mixed_precision", "no", "--dynamo_backend", "no",
                train_module.__file__, *args]
    return [sys.executable, "-m", train_module.__name__, *args]


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m eval.ablate", description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="training recipe shared by every row")
    ap.add_argument("--data", required=True, help="test set folder for eval.run")
    ap.add_argument("--testset", default="s4", help="vggss | is3 | is3plus | s4 (the paper's Table 4 uses s4)")
    ap.add_argument("--out", required=True, help="ablation folder (runs/, results/, report/)")
    ap.add_argument("--rows", default=",".join(r[0] for r in ROWS), help="subset of rows, comma-separated")
    ap.add_argument("--processes", type=int, default=1, help="training processes per row (accelerate launch)")
    ap.add_argument("--eval-args", default="", help="extra key=value options for eval.run, space-separated")
    ap.add_argument("--seeds", type=int, default=0,
                    help="train every row with seeds 1..N (runs/<row>/seed-<k>/), each evaluated; 0: the recipe's seed")
    ap.add_argument("overrides", nargs="*", help="key=value training overrides applied to every row")
    args = ap.parse_intermixed_args(argv)
    chosen = args.rows.split(",")
    unknown = sorted(set(chosen) - {r[0] for r in ROWS})
    if unknown:
        raise UserError(f"--rows: unknown ablation row(s) {unknown}; rows: {[r[0] for r in ROWS]}")
    if not Path(args.config).is_file():
        raise UserError(f"{args.config}: training recipe not found")
    if not Path(args.data).is_dir():
        raise UserError(f"{args.data}: test set folder not found")
    if args.seeds < 0:
        raise UserError(f"--seeds: expected 0 or more, got {args.seeds}")
    out = Path(args.out)
    seeds = list(range(1, args.seeds + 1))
    results = []
    for row in (r for r in ROWS if r[0] in chosen):
        runs = [(f"seed-{k}/", f"{row[0]} seed {k}") for k in seeds] or [("", row[0])]
        todo = [(sub, what) for sub, what in runs if not (out / "results" / row[0] / sub / "metrics.json").exists()]
        results += [str(out / "results" / row[0] / sub) for sub, _ in runs]
        if not todo:
            print(f"[ablate] {row[0]}: already evaluated, kept", flush=True)
            continue
        _run(train_command(args.config, out, row, args.processes, args.overrides, seeds), f"train {row[0]}")
        for sub, what in todo:
            _run([sys.executable, "-m", run_module.__name__, "--ckpt", str(out / "runs" / row[0] / sub), "--testset",
                  args.testset, "--data", args.data, "--out", str(out / "results" / row[0] / sub),
                  f"name={row[0]}", *args.eval_args.split()], f"evaluate {what}")
    _run([sys.executable, "-m", report_module.__name__, *results, "--out", str(out / "report")], "report")
    print(f"[ablate] Table 4: {out / 'report' / 'tables.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
