"""`make mutation`: mutation testing (mutmut) of the code whose numbers end up in papers, each group of modules
against the tests that cover it. Usage: `python scripts/mutation.py [--out mutation/] [--group NAME ...] [--no-run]`
(`--no-run` scores the runs already in OUT again, e.g. after listing equivalent mutants in tests/MUTANTS.md).

Each group runs in a copy of the working tree (tracked and untracked, not ignored, files) under OUT/NAME, so the
checkout is never mutated; mutmut generates the mutants, maps each function to the tests that reach it, and runs
only those for each mutant (forked from one warm process: one thread per library, and Numba's workqueue threading
layer, as a forked OpenMP pool aborts or hangs).
mutmut leaves decorated functions alone, so the Numba kernels (`@nb.njit` in eval/metrics) are a group of their own,
`kernels`: in its copy their decorators are removed and Numba's jit is disabled, so mutmut mutates the kernels as
the plain Python functions they are without the decorator (the same statements: Numba compiles a subset of Python
and numpy with the same meaning), and only the kernels' mutants are run, against the tests that pin them to the
independent numpy references; their Python callers are mutated in the `metrics` group, with jit.
Writes OUT/summary.json and prints, per group, killed / survived / no test / timeout and the score, and every
surviving mutant not listed in tests/MUTANTS.md (mutants shown to change no output: equivalent). Exit status 1 when
the score over non-equivalent mutants is below --goal (default 0.9).
"""
from __future__ import annotations

import argparse
import ast
import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GROUPS: dict[str, dict] = {
    "metrics": {"source": ["eval/metrics"],
                "tests": ["tests/test_metrics_kernels.py", "tests/test_metrics_golden.py",
                          "tests/test_metrics_compute_all.py", "tests/test_metrics_upsample.py",
                          "tests/test_metrics_negatives.py", "tests/test_metrics_config.py", "tests/test_bootstrap.py",
                          "tests/test_metrics_outputs.py", "tests/test_metrics_helpers.py"],
                # GNU OpenMP aborts a forked child that runs a parallel kernel; workqueue with one thread does not.
                # Bounds checks in the compiled kernels: a caller's mutant that allocates a buffer too small for
                # them (one row for M maps) raises IndexError instead of writing past its end unnoticed
                "env": {"NUMBA_THREADING_LAYER": "workqueue", "NUMBA_BOUNDSCHECK": "1"}},
    # the Numba kernels as plain Python (see the module docstring), against the tests that pin them alone
    "kernels": {"source": ["eval/metrics/kernels.py", "eval/metrics/bootstrap.py", "eval/metrics/upsample.py"],
                "tests": ["tests/test_metrics_kernels.py", "tests/test_metrics_upsample.py",
                          "tests/test_bootstrap.py::test_kernels_equal_the_numpy_loop",
                          "tests/test_bootstrap.py::test_kernels_equal_the_numpy_loop_on_small_sets",
                          "tests/test_bootstrap.py::test_weighted_quantile_kernel_is_numpys_percentile_bit_for_bit",
                          "tests/test_metrics_helpers.py::test_sweep_reads_any_gt_type_as_nonzero_is_object"],
                "env": {"NUMBA_DISABLE_JIT": "1"}, "unjit": True},
    "losses": {"source": ["trainer/losses.py", "trainer/objective.py", "trainer/equivariance.py"],
               "tests": ["tests/test_losses.py", "tests/test_objective.py"], "env": {}},
    "features": {"source": ["pipeline/load/features.py", "pipeline/load/augment.py"],
                 "tests": ["tests/test_features.py", "tests/test_augment.py"], "env": {}},
}
THREADS = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}
STATES = ("killed", "survived", "no tests", "timeout", "suspicious", "skipped", "segfault", "not checked")


def equivalent_mutants(path: Path = ROOT / "tests" / "MUTANTS.md") -> set[str]:
    """Mutant names listed in tests/MUTANTS.md (each line of its tables starts with `| name |`)."""
    if not path.exists():
        return set()
    return set(re.findall(r"^\| `?([\w.]+__mutmut_\d+)`? \|", path.read_text(), flags=re.M))


def copy_tree(dest: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                           capture_output=True).stdout.decode().split("\0")
    for rel in filter(None, files):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def numba_kernels(source: str) -> list[tuple[str, set[int]]]:
    """(name, 0-based line numbers of its Numba decorators) of each module-level Numba function of `source`."""
    kernels = []
    for node in ast.parse(source).body:
        if not isinstance(node, ast.FunctionDef):
            continue
        jit = [d for d in node.decorator_list if "jit" in ast.unparse(d)]
        if jit and len(jit) != len(node.decorator_list):
            raise SystemExit(f"error: {node.name}: decorators other than Numba's")
        if jit:
            kernels.append((node.name, {i for d in jit for i in range(d.lineno - 1, d.end_lineno)}))
    return kernels


def kernel_patterns(group: dict) -> list[str]:
    """The mutant name patterns of a group's Numba kernels (mutmut names a function f's mutants
    `module.x_f__mutmut_N`); empty for a group that mutates whole modules."""
    if not group.get("unjit"):
        return []
    patterns = [f"{rel.removesuffix('.py').replace('/', '.')}.x_{name}__mutmut_*"
                for rel in group["source"] for name, _ in numba_kernels((ROOT / rel).read_text())]
    if not patterns:
        raise SystemExit(f"error: {', '.join(group['source'])}: no Numba kernel found")
    return patterns


def unjit(path: Path) -> None:
    """Remove the Numba decorators of the module-level functions of `path` (in the copy)."""
    source = path.read_text()
    drop = set().union(*(lines for _, lines in numba_kernels(source)))
    path.write_text("".join(line for i, line in enumerate(source.splitlines(keepends=True)) if i not in drop))


def configure(dest: Path, group: dict) -> None:
    """mutmut's settings, appended to the copy's pyproject.toml."""
    lines = ["", "[tool.mutmut]", f"source_paths = {json.dumps(group['source'])}",
             f"pytest_add_cli_args_test_selection = {json.dumps(group['tests'])}",
             'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q"]',
             'also_copy = ["pipeline", "trainer", "eval", "tests"]',
             # a mutant slower than 5x its tests' clean time is a timeout (counted as killed): mutmut's default 15x
             # let each endless loop hold a worker for many minutes
             "timeout_multiplier = 5.0"]
    with open(dest / "pyproject.toml", "a") as fh:
        fh.write("\n".join(lines) + "\n")


def run_group(name: str, out: Path, mutmut: str) -> None:
    """Copy the tree to OUT/NAME and run mutmut there (log: OUT/NAME/mutmut.log)."""
    group = GROUPS[name]
    dest = out / name
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    copy_tree(dest)
    configure(dest, group)
    if group.get("unjit"):
        for rel in group["source"]:
            unjit(dest / rel)
    with open(dest / "mutmut.log", "w") as fh:
        subprocess.run([mutmut, "run", "--max-children", str(max(1, len(os.sched_getaffinity(0)))),
                        *kernel_patterns(group)], cwd=dest, env=group_env(group), stdout=fh,
                       stderr=subprocess.STDOUT, check=False)


def group_env(group: dict) -> dict:
    env = dict(os.environ, **THREADS, **group["env"])
    env.pop("PYTHONPATH", None)
    return env


def results_of(name: str, out: Path, mutmut: str) -> dict[str, str]:
    """{mutant: state} of the group's run in OUT/NAME (the kernels group: its kernels' mutants only)."""
    group, dest = GROUPS[name], out / name
    if not (dest / "mutants").is_dir():
        raise SystemExit(f"error: {dest}: no mutmut run there (run without --no-run first)")
    only = kernel_patterns(group)
    listing = subprocess.run([mutmut, "results", "--all", "true"], cwd=dest, env=group_env(group),
                             capture_output=True, text=True, check=False)
    results: dict[str, str] = {}
    for line in listing.stdout.splitlines():
        if ":" in line and "__mutmut_" in line:
            mutant, state = (x.strip() for x in line.rsplit(":", 1))
            if not only or any(fnmatch.fnmatch(mutant, pat) for pat in only):
                results[mutant] = state
    if not results:
        raise SystemExit(f"error: {dest / 'mutmut.log'}: mutmut produced no results (see the log)")
    return results


def summarise(results: dict[str, str], equivalent: set[str]) -> dict:
    counts = {s: sum(1 for v in results.values() if v == s) for s in STATES}
    survived = sorted(m for m, s in results.items() if s in ("survived", "no tests"))
    listed = [m for m in survived if m in equivalent]
    open_ = [m for m in survived if m not in equivalent]
    considered = len(results) - len(listed)
    killed = counts["killed"] + counts["timeout"] + counts["segfault"]
    return {"mutants": len(results), "counts": counts, "equivalent_listed": len(listed),
            "score": round(killed / considered, 4) if considered else 1.0, "not_killed": open_}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="scripts/mutation.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "mutation"), help="work folder (default mutation/, git-ignored)")
    p.add_argument("--group", action="append", choices=list(GROUPS), help="only these groups (default: all)")
    p.add_argument("--goal", type=float, default=0.9)
    p.add_argument("--no-run", action="store_true",
                   help="score the runs already in OUT again (after editing tests/MUTANTS.md) without running mutmut")
    a = p.parse_args(argv)
    mutmut = shutil.which("mutmut", path=str(Path(sys.executable).parent)) or shutil.which("mutmut")
    if mutmut is None:
        print("error: mutmut: not installed (pip install -e '.[test]')", file=sys.stderr)
        return 2
    out = Path(a.out)
    equivalent = equivalent_mutants()
    summary = {}
    for name in a.group or list(GROUPS):
        if not a.no_run:
            run_group(name, out, mutmut)
        summary[name] = summarise(results_of(name, out, mutmut), equivalent)
        s = summary[name]
        print(f"{name}: {s['mutants']} mutants, killed {s['counts']['killed']} + timeout {s['counts']['timeout']}, "
              f"survived {s['counts']['survived']}, no tests {s['counts']['no tests']}, equivalent (tests/MUTANTS.md) "
              f"{s['equivalent_listed']}: score {s['score']:.1%}", flush=True)
        for m in s["not_killed"]:
            print(f"  not killed: {m}")
    total = sum(s["mutants"] - s["equivalent_listed"] for s in summary.values())
    killed = sum(s["counts"]["killed"] + s["counts"]["timeout"] + s["counts"]["segfault"] for s in summary.values())
    summary["total"] = {"considered": total, "killed": killed, "score": round(killed / total, 4) if total else 1.0}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"total: {killed} of {total} non-equivalent mutants killed: {summary['total']['score']:.1%}")
    return 0 if summary["total"]["score"] >= a.goal else 1


if __name__ == "__main__":
    raise SystemExit(main())
