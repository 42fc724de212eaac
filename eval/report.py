"""Reports: the paper's Tables 1-4 as Markdown and CSV (one row per evaluated checkpoint, several side by side) and
the figures (Fig. 1: distributions of per-sample map maxima with tau_U; Fig. 2: thresholded maps over images).

`python -m eval.report results/A results/B ... --out report/ [--paper] [--mixed-coverage]`
Each results folder is what `eval.run` writes (metrics.json + maps.zarr). Rows are grouped by test set in the paper's
order (VGG-SS, IS3, IS3+, S4), then in the order given; `--paper` adds the paper's published SSL-TIE and SSL-SaN rows
(`eval.paper`) after the measured rows of each test set; Table 4 shows each row's S, N, L_S, L_N switches. Every row
states its coverage (samples scored / annotated); rows of one test set that scored different samples are refused
unless `--mixed-coverage`.
Writes OUT/tables.md, OUT/tables.csv (long format: table, testset, model, column, value), OUT/maxima.png and
OUT/overlays_{testset}_{model}.png.
`eval.run` and `eval.rescore` call `write_report([results], results)` for a single run.
"""
from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from eval.errors import EvalError  # noqa: E402
from eval.metrics.upsample import upsample  # noqa: E402
from eval.paper import paper_rows  # noqa: E402
from eval.store import Store, read_store  # noqa: E402
from pipeline.common.atomic import atomic_open, atomic_write_text  # noqa: E402
from pipeline.common.cli import Parser, run_cli  # noqa: E402
from pipeline.common.outputs import replacing  # noqa: E402

REPORT_FILES = ("tables.md", "tables.csv", "maxima.png", "overlays_*.png")  # what a report folder holds
TESTSET_TITLES = {"vggss": "VGG-SS", "is3": "IS3", "is3plus": "IS3+", "s4": "AVS-Bench S4"}
NEG_KINDS = ("silence", "noise", "offscreen")

# (column header, key in metrics.json's metrics.tables.tableK): the paper's table layouts.
TABLE1 = [("Magnitude", "Magnitude"), ("Alignment", "Alignment"), ("Separability", "Separability")]
TABLE2 = [("cIoU Uth", "cIoU_Uth"), ("cIoU Adap.", "cIoU_Adap"), ("AUC Uth", "AUC_Uth"), ("AUC Adap.", "AUC_Adap"),
          ("Silence pIA", "pIA_S"), ("Silence AUCN", "AUCN_S"), ("Noise pIA", "pIA_N"), ("Noise AUCN", "AUCN_N"),
          ("Offscreen pIA", "pIA_O"), ("Offscreen AUCN", "AUCN_O"), ("FLOC", "FLOC"), ("FAUC", "FAUC")]
TABLE3 = [(f"{d} {m}@{k}", f"{tag}_{m}@{k}") for d, tag in (("I→A", "I2A"), ("A→I", "A2I"))
          for m in ("P", "A") for k in (1, 5, 10)]
TABLE4 = [("cIoU Uth", "cIoU_Uth"), ("pIA S", "pIA_S"), ("pIA N", "pIA_N"), ("pIA O", "pIA_O"), ("FLOC", "FLOC"),
          ("Sep", "Sep")]
TABLES = {"table1": ("Table 1: magnitude, alignment and separability", TABLE1),
          "table2": ("Table 2: localization with positive and negative audio", TABLE2),
          "table3": ("Table 3: cross-modal retrieval", TABLE3),
          "table4": ("Table 4: silence / noise training switches (S, N, L_S, L_N of the checkpoint)", TABLE4)}
SWITCHES = ("S", "N", "L_S", "L_N")


@dataclass
class Result:
    path: Path
    info: dict                   # metrics.json
    loaded: Store | None = None  # the maps, when the caller has them in memory already (else read when needed)

    @property
    def model(self) -> str:
        return str(self.info.get("model") or self.path.name)

    @property
    def testset(self) -> str:
        return str(self.info.get("testset", ""))

    @property
    def published(self) -> bool:
        """A row of numbers printed in the paper (no maps behind it)."""
        return bool(self.info.get("published"))

    @property
    def metrics(self) -> dict:
        return self.info["metrics"]

    @property
    def coverage(self) -> str:
        """`scored/annotated` samples, e.g. `4,911/5,158` ("—" for the paper's rows)."""
        cov = self.info.get("coverage") or {}
        if self.published or cov.get("scored") is None:
            return "—"
        return f"{cov['scored']:,}/{cov['annotated']:,}"

    def store(self) -> Store:
        """The maps beside metrics.json, or where a rescore into another folder says they are."""
        if self.loaded is not None:
            return self.loaded
        here = self.path / "maps.zarr"
        return read_store(here if here.exists() or "store" not in self.info else self.info["store"])


def load_result(path: str | Path) -> Result:
    path = Path(path)
    f = path / "metrics.json"
    if not f.is_file():
        raise EvalError(f"{f}: not found (is {path} a finished eval.run output?)")
    try:
        info = json.loads(f.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise EvalError(f"{f}: not valid JSON: {exc}") from None
    if not isinstance(info, dict) or "metrics" not in info:
        raise EvalError(f"{f}: no 'metrics' entry")
    return Result(path, info)


def lookup(metrics: dict, dotted: str) -> float | None:
    node = metrics
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return float(node) if isinstance(node, (int, float)) else None


def _order(results: list[Result]) -> list[Result]:
    rank = {t: i for i, t in enumerate(TESTSET_TITLES)}
    return sorted(results, key=lambda r: rank.get(r.testset, len(rank)))   # stable: keeps the given order inside


def _fmt(v: float | None, header: str) -> str:
    if v is None or math.isnan(v):
        return "—"
    return f"{v:.4f}" if header in ("Separability", "Sep", "tau_U") else f"{v:.2f}"


def _arrow(header: str) -> str:
    """The paper's direction marks: lower is better for magnitude and pIA, higher for everything else."""
    return "↓" if header == "Magnitude" or "pIA" in header else "↑"


def _switches(r: Result) -> list[str]:
    san = r.info.get("train_san") or {}
    return ["✓" if san.get(k) else "" for k in SWITCHES]


def tables(results: list[Result]) -> tuple[str, str]:
    """(Markdown, CSV) of the paper's Tables 1-4 for `results`, grouped by test set."""
    results = _order(results)
    md = []
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "testset", "model", "column", "value"])
    for key, (title, cols) in TABLES.items():
        extra = list(SWITCHES) if key == "table4" else []
        headers = extra + [f"{h} {_arrow(h)}" for h, _ in cols]
        md += [f"## {title}", "", "| Test set | Model | Samples | " + " | ".join(headers) + " |",
               "|---|---|---:|" + ":---:|" * len(extra) + "---:|" * len(cols)]
        for r in results:
            if r.published and not r.metrics["tables"].get(key):
                continue
            values = [lookup(r.metrics, f"tables.{key}.{k}") for _, k in cols]
            cells = (_switches(r) if extra else []) + [_fmt(v, h) for v, (h, _) in zip(values, cols)]
            md.append(f"| {TESTSET_TITLES.get(r.testset, r.testset)} | {r.model} | {r.coverage} | "
                      + " | ".join(cells) + " |")
            for h, cell in zip(extra, _switches(r) if extra else []):
                w.writerow([key, r.testset, r.model, h, "1" if cell else "0"])
            for v, (h, _) in zip(values, cols):
                w.writerow([key, r.testset, r.model, h, "" if v is None else repr(v)])
        md.append("")
    md += ["Universal threshold tau_U of each measured row (the Uth columns, pIA, AUCN, FLOC and FAUC use it):", ""]
    for r in (r for r in results if not r.published):
        tau = lookup(r.metrics, "thresholds.tau_U")
        source = r.info.get("calibration") or "this test set's negatives"
        md.append(f"- {TESTSET_TITLES.get(r.testset, r.testset)} / {r.model}: {_fmt(tau, 'tau_U')} (from {source})")
        w.writerow(["thresholds", r.testset, r.model, "tau_U", "" if tau is None else repr(tau)])
        w.writerow(["coverage", r.testset, r.model, "samples", r.coverage])
    return "\n".join(md) + "\n", buf.getvalue()


def plot_maxima(results: list[Result], path: Path) -> None:
    """Fig. 1: per-sample maxima of positive / silence / noise / offscreen maps, tau_U marked, one panel per result."""
    results = _order(results)
    fig, axes = plt.subplots(1, len(results), figsize=(4.2 * len(results), 3.6), squeeze=False)
    for ax, r in zip(axes[0], results):
        st = r.store()
        data = [st["max_pos"].ravel()] + [st[f"max_{k}"].ravel() for k in NEG_KINDS]
        parts = ax.violinplot(data, showmedians=True)
        for body, color in zip(parts["bodies"], ("tab:green", "tab:gray", "tab:orange", "tab:purple")):
            body.set_facecolor(color)
        tau = lookup(r.metrics, "thresholds.tau_U")
        if tau is not None:
            ax.axhline(tau, color="tab:red", linestyle="--", label=f"τU = {tau:.4f}")
            ax.legend(loc="lower right", fontsize=8)
        ax.set_xticks(range(1, 5), ["positive", *NEG_KINDS], fontsize=8)
        ax.set_title(f"{r.model} · {TESTSET_TITLES.get(r.testset, r.testset)}", fontsize=9)
        ax.set_ylabel("max of similarity map")
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=110)
    plt.close(fig)


def plot_overlays(result: Result, path: Path) -> None:
    """Fig. 2: for the stored samples, each map (positive, silence, noise and offscreen of the first pass) upsampled to
    224, values below tau_U clipped, the rest scaled to [0, 1] over the row and overlaid; GT boundary in green."""
    st = result.store()
    idx, images = st["overlay_index"], st["overlay_image"]
    if len(idx) == 0:
        return
    tau = lookup(result.metrics, "thresholds.tau_U")
    tau = -np.inf if tau is None else tau
    fig, axes = plt.subplots(len(idx), 4, figsize=(10, 2.7 * len(idx)), squeeze=False)
    for row, (i, img) in enumerate(zip(idx, images)):
        maps = [st["pos"][i], st["silence"][i], st["noise"][i, 0], st["offscreen"][i, 0]]
        big = upsample(np.stack(maps).astype(np.float32), 224)
        top = float(big.max())
        for col, (raw, m, name) in enumerate(zip(maps, big, ("positive", *NEG_KINDS))):
            ax = axes[row, col]
            ax.imshow(img)
            if top > tau:
                shown = np.clip((m - tau) / (top - tau), 0.0, 1.0)
                ax.imshow(shown, cmap="jet", alpha=0.55 * (shown > 0), vmin=0, vmax=1)
            if st["gt"][i].any():
                ax.contour(st["gt"][i], levels=[0.5], colors="lime", linewidths=1)
            ax.set_title(f"{name}\nmin {raw.min():.3f} max {raw.max():.3f}", fontsize=8)
            ax.axis("off")
        axes[row, 0].text(-8, 112, str(st["keys"][i]), rotation=90, va="center", ha="right", fontsize=7)
    fig.tight_layout()
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=90)
    plt.close(fig)


def paper_results(testsets) -> list[Result]:
    """The paper's SSL-TIE and SSL-SaN rows (`eval.paper`) for the given test sets, as report rows."""
    return [Result(Path("paper"), {"model": row["model"], "testset": t, "train_san": row["train_san"],
                                   "metrics": {"tables": row["tables"]}, "published": True})
            for t in dict.fromkeys(testsets) for row in paper_rows(t)]


def write_report(paths: list[str | Path], out: str | Path, paper: bool = False) -> Path:
    """Tables and figures of the results folders `paths` in `out`; `paper` adds the paper's rows for comparison."""
    return report_results([load_result(p) for p in paths], out, paper)


def check_coverage(results: list[Result]) -> None:
    """Refuse measured rows of one test set that scored different samples (another subset, missing files): their
    numbers are not comparable side by side."""
    by_set: dict[str, list[Result]] = {}
    for r in results:
        if not r.published:
            by_set.setdefault(r.testset, []).append(r)
    for testset, rows in by_set.items():
        digests = [(r.info.get("coverage") or {}).get("keys_sha256") for r in rows]
        same = len(set(digests)) == 1 if all(digests) else len({r.coverage for r in rows}) == 1  # older: counts
        if not same:
            listed = ", ".join(f"{r.model} {r.coverage}" for r in rows)
            raise EvalError(f"{TESTSET_TITLES.get(testset, testset)}: the rows score different samples ({listed}); "
                            f"evaluate them on the same subset, or add --mixed-coverage to put them side by side")


def report_results(results: list[Result], out: str | Path, paper: bool = False,
                   mixed_coverage: bool = False) -> Path:
    """Tables and figures of `results` in the existing folder `out` (rows of one test set must score the same
    samples unless `mixed_coverage`)."""
    if not results:
        raise EvalError("give at least one results folder")
    if not mixed_coverage:
        check_coverage(results)
    out = Path(out)
    md, table_csv = tables(results + (paper_results(r.testset for r in results) if paper else []))
    atomic_write_text(out / "tables.md", "# SSL-SaN evaluation\n\n" + md)
    atomic_write_text(out / "tables.csv", table_csv)
    plot_maxima(results, out / "maxima.png")
    for r in results:
        plot_overlays(r, out / f"overlays_{r.testset}_{r.model.replace('/', '_')}.png")
    return out / "tables.md"


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m eval.report",
                description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("results", nargs="+", help="results folders written by eval.run")
    ap.add_argument("--out", required=True, help="report folder")
    ap.add_argument("--paper", action="store_true", help="add the paper's SSL-TIE and SSL-SaN rows for comparison")
    ap.add_argument("--mixed-coverage", action="store_true",
                    help="put rows of one test set side by side even when they scored different samples")
    args = ap.parse_intermixed_args(argv)
    results = [load_result(p) for p in args.results]
    if not args.mixed_coverage:
        check_coverage(results)                 # before anything is written
    out = Path(args.out)
    with replacing(out, REPORT_FILES) as stage:
        report_results(results, stage, paper=args.paper, mixed_coverage=True)
    print(f"wrote {out / 'tables.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
