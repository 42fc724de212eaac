"""Reports: the paper's Tables 1-4 as Markdown and CSV (one row per evaluated checkpoint, several side by side) and
the figures (Fig. 1: distributions of per-sample map maxima with tau_U; Fig. 2: thresholded maps over images).

`python -m eval.report results/A results/B ... --out report/ [--paper] [--mixed-coverage]`
Each results folder is what `eval.run` writes (metrics.json + maps.zarr). Rows are grouped by test set in the paper's
order (VGG-SS, IS3, IS3+, S4), then in the order given; `--paper` adds the paper's published SSL-TIE and SSL-SaN rows
(`eval.paper`) after the measured rows of each test set; Table 4 shows each row's S, N, L_S, L_N switches. Every row
states its coverage (samples scored / annotated); rows of one test set that scored different samples are refused
unless `--mixed-coverage`.
Rows of one recipe trained with several seeds (eval.run records each checkpoint's seed) are labelled <model>/seed-<k>
and preceded by the recipe's row over its seeds (mean ± standard deviation; section Seeds: per-seed values and the 95%
t interval); each further such recipe of a test set is compared with the first one over seeds (difference of the
means, Welch interval: section Recipes compared over seeds), and a test set with exactly two rows gets their paired
differences (eval.compare).
Writes OUT/tables.md (cells `value ± half-width` of the bootstrap interval, eval.metrics.bootstrap, and a caption
under each table saying what the rows are), OUT/tables.csv (long format: table, testset, model, column, value, lo,
hi: the interval's ends), OUT/maxima.png (tau_U with its interval) and OUT/overlays_{testset}_{model}.png.
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

from eval.compare import paired_differences  # noqa: E402
from eval.config import EvalConfig  # noqa: E402
from eval.errors import EvalError  # noqa: E402
from eval.metrics.upsample import upsample  # noqa: E402
from eval.paper import paper_rows  # noqa: E402
from eval.seeds import aggregate, difference  # noqa: E402
from eval.store import Store, read_store  # noqa: E402
from pipeline.common.atomic import atomic_open, atomic_write_text  # noqa: E402
from pipeline.common.cli import Parser, run_cli  # noqa: E402
from pipeline.common.config import load_config  # noqa: E402
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
    one_of_seeds: bool = False   # one of several seeds of its recipe in a report: labelled <model>/seed-<k>

    @property
    def base_model(self) -> str:
        return str(self.info.get("model") or self.path.name)

    @property
    def model(self) -> str:
        return f"{self.base_model}/seed-{self.info['train_seed']}" if self.one_of_seeds else self.base_model

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


def _fmt(v: float | None, header: str, iv: dict | None = None) -> str:
    """A table cell: the value, and `± half-width` of its bootstrap interval when there is one."""
    if v is None or math.isnan(v):
        return "—"
    digits = 4 if header in ("Separability", "Sep", "tau_U") else 2
    if iv is None or not math.isfinite(iv.get("lo", math.nan)):
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f} ± {(iv['hi'] - iv['lo']) / 2:.{digits}f}"


def _interval(r: Result, table: str, key: str) -> dict | None:
    return ((r.info.get("metrics") or {}).get("intervals") or {}).get("tables", {}).get(table, {}).get(key)


def _caption(results: list[Result], groups: dict) -> str:
    """Who the rows are: for each test set its samples, the noise and offscreen draws a sample, the image groups
    resampled and the resamples (rows with the same description share one clause); and what a row over the training
    seeds of a recipe (`groups`: seed_groups) shows."""
    recipes = dict.fromkeys(f"{model} ({len(rows)} seeds)" for (_, model), rows in groups.items())
    parts = [", ".join(recipes) + ": mean ± standard deviation over the training seeds (their 95% t interval: "
             "section Seeds)"] if recipes else []
    by_testset: dict[str, dict[str, list[str]]] = {}
    for r in results:
        if r.published:
            continue
        iv = r.metrics.get("intervals") or {}
        seeds = len(r.info.get("seeds") or [])
        what = (f"± half-width of the {100 * iv['confidence']:.0f}% bootstrap interval over {iv['groups']:,} "
                f"image groups, {iv['resamples']:,} resamples" if iv else "no intervals")
        desc = f"{r.coverage} samples, {seeds} noise and offscreen draws a sample; {what}"
        by_testset.setdefault(r.testset, {}).setdefault(desc, []).append(r.model)
    for testset, descs in by_testset.items():
        title = TESTSET_TITLES.get(testset, testset)
        models = [m for ms in descs.values() for m in ms]
        if len(descs) == 1 and len(models) > 1:
            parts.append(f"{title}, all {len(models)} measured rows: {next(iter(descs))}")
        else:
            parts += [f"{title} / {', '.join(ms)}: {desc}" for desc, ms in descs.items()]
    return "Rows: " + "; ".join(parts) + "." if parts else ""


def _arrow(header: str) -> str:
    """The paper's direction marks: lower is better for magnitude and pIA, higher for everything else."""
    return "↓" if header == "Magnitude" or "pIA" in header else "↑"


def _switches(r: Result) -> list[str]:
    san = r.info.get("train_san") or {}
    return ["✓" if san.get(k) else "" for k in SWITCHES]


def seed_groups(results: list[Result]) -> dict[tuple[str, str], list[Result]]:
    """(test set, model) -> its measured rows, for recipes evaluated with two or more training seeds; marks those
    rows `one_of_seeds`."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        if not r.published and r.info.get("train_seed") is not None:
            groups.setdefault((r.testset, r.base_model), []).append(r)
    groups = {k: v for k, v in groups.items() if len({r.info["train_seed"] for r in v}) >= 2}
    for rows in groups.values():
        for r in rows:
            r.one_of_seeds = True
    return groups


def _seed_row(rows: list[Result], key: str, cols: list) -> tuple[list[str], list[dict]]:
    """The cells of a recipe's row over its seeds (mean ± standard deviation) and their aggregates."""
    aggs = [aggregate([lookup(r.metrics, f"tables.{key}.{k}") for r in rows]) for _, k in cols]
    cells = []
    for agg, (h, _) in zip(aggs, cols):
        digits = 4 if h in ("Separability", "Sep") else 2
        cells.append("—" if math.isnan(agg["mean"]) else f"{agg['mean']:.{digits}f} ± {agg['sd']:.{digits}f}")
    return cells, aggs


def tables(results: list[Result], pairs: list | None = None) -> tuple[str, str]:
    """(Markdown, CSV) of the paper's Tables 1-4 for `results`, grouped by test set, then the paired differences
    `pairs` ([(A, B, eval.compare.paired_differences)]) when there are any."""
    results = _order(results)
    groups = seed_groups(results)
    md = []
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["table", "testset", "model", "column", "value", "lo", "hi", "p"])
    for key, (title, cols) in TABLES.items():
        extra = list(SWITCHES) if key == "table4" else []
        headers = extra + [f"{h} {_arrow(h)}" for h, _ in cols]
        md += [f"## {title}", "", "| Test set | Model | Samples | " + " | ".join(headers) + " |",
               "|---|---|---:|" + ":---:|" * len(extra) + "---:|" * len(cols)]
        for r in results:
            if r.published and not r.metrics["tables"].get(key):
                continue
            rows = groups.get((r.testset, r.base_model))
            if rows and r is rows[0]:      # the recipe over its seeds, before its per-seed rows
                cells, aggs = _seed_row(rows, key, cols)
                md.append(f"| {TESTSET_TITLES.get(r.testset, r.testset)} | {r.base_model} ({len(rows)} seeds) | "
                          f"{r.coverage} | " + " | ".join((_switches(r) if extra else []) + cells) + " |")
                for agg, (h, _) in zip(aggs, cols):
                    w.writerow([key, r.testset, f"{r.base_model} (seeds)", h, repr(agg["mean"]), repr(agg["lo"]),
                                repr(agg["hi"]), ""])
                    w.writerow([key, r.testset, f"{r.base_model} (seeds)", f"{h} sd", repr(agg["sd"]), "", "", ""])
            values = [lookup(r.metrics, f"tables.{key}.{k}") for _, k in cols]
            ivs = [_interval(r, key, k) for _, k in cols]
            cells = (_switches(r) if extra else []) + [_fmt(v, h, iv) for v, iv, (h, _) in zip(values, ivs, cols)]
            md.append(f"| {TESTSET_TITLES.get(r.testset, r.testset)} | {r.model} | {r.coverage} | "
                      + " | ".join(cells) + " |")
            for h, cell in zip(extra, _switches(r) if extra else []):
                w.writerow([key, r.testset, r.model, h, "1" if cell else "0", "", ""])
            for v, iv, (h, _) in zip(values, ivs, cols):
                ends = [repr(iv["lo"]), repr(iv["hi"])] if iv else ["", ""]
                w.writerow([key, r.testset, r.model, h, "" if v is None else repr(v), *ends])
        caption = _caption(results, groups)
        md += ["", caption, ""] if caption else [""]
    md += ["Universal threshold tau_U of each measured row (the Uth columns, pIA, AUCN, FLOC and FAUC use it):", ""]
    for r in (r for r in results if not r.published):
        tau = lookup(r.metrics, "thresholds.tau_U")
        iv = (r.metrics.get("intervals") or {}).get("tau_U")
        source = r.info.get("calibration") or "this test set's negatives"
        md.append(f"- {TESTSET_TITLES.get(r.testset, r.testset)} / {r.model}: {_fmt(tau, 'tau_U', iv)} (from "
                  f"{source})")
        ends = [repr(iv["lo"]), repr(iv["hi"])] if iv else ["", ""]
        w.writerow(["thresholds", r.testset, r.model, "tau_U", "" if tau is None else repr(tau), *ends])
        w.writerow(["coverage", r.testset, r.model, "samples", r.coverage, "", ""])
    if groups:
        md += ["", *_seeds_section(groups)]
        md += _recipe_differences(groups, w)
    if pairs:
        md += ["", *_paired_section(pairs, w)]
    return "\n".join(md) + "\n", buf.getvalue()


def _seeds_section(groups: dict) -> list[str]:
    """Per recipe evaluated with several training seeds: each metric's mean, standard deviation, the per-seed values
    and, from 3 seeds, the 95% t interval of the mean over seeds."""
    md = ["## Seeds", "", "Recipes trained with several seeds: mean and standard deviation over the seeds, each seed's "
          "value, and from 3 seeds the 95% t interval of the mean (eval.seeds).", "",
          "| Test set | Model | Metric | mean | sd | per seed | 95% interval over seeds |",
          "|---|---|---|---:|---:|---|---|"]
    for (testset, model), rows in groups.items():
        seeds = ", ".join(str(r.info["train_seed"]) for r in rows)
        for key, (_, cols) in TABLES.items():
            for h, k in cols:
                agg = aggregate([lookup(r.metrics, f"tables.{key}.{k}") for r in rows])
                if math.isnan(agg["mean"]):
                    continue
                each = " / ".join(_fmt(v, h) for v in agg["values"])
                span = "—" if math.isnan(agg["lo"]) else f"[{_fmt(agg['lo'], h)}, {_fmt(agg['hi'], h)}]"
                md.append(f"| {TESTSET_TITLES.get(testset, testset)} | {model} (seeds {seeds}) | {key[-1]}: {h} | "
                          f"{_fmt(agg['mean'], h)} | {_fmt(agg['sd'], h)} | {each} | {span} |")
    return md


def _recipe_differences(groups: dict, w) -> list[str]:
    """For each test set with two or more recipes evaluated over seeds: every recipe minus the first one, mean over
    seeds, with its 95% Welch interval (eval.seeds.difference); CSV rows under table `seeds_diff`."""
    by_set: dict[str, list] = {}
    for (testset, model), rows in groups.items():
        by_set.setdefault(testset, []).append((model, rows))
    pairs = [(recipes[0], other) for recipes in by_set.values() for other in recipes[1:]]
    if not pairs:
        return []
    md = ["", "## Recipes compared over seeds", "",
          "Each recipe minus the first one of its test set, difference of their means over training seeds, with the "
          "95% Welch interval "
          "(degrees of freedom rounded down); * marks an interval that excludes 0. Seeds vary the training run, "
          "the test samples are the same: this is the variation the paired bootstrap of two checkpoints does not "
          "see.", "", "| Test set | B - A | Table | Metric | B - A | 95% interval | seeds |",
          "|---|---|---|---|---:|---|---|"]
    for (ma, ra), (mb, rb) in pairs:
        testset = ra[0].testset
        name = f"{mb} - {ma}"
        for key, (_, cols) in TABLES.items():
            for h, k in cols:
                d = difference([lookup(r.metrics, f"tables.{key}.{k}") for r in ra],
                               [lookup(r.metrics, f"tables.{key}.{k}") for r in rb])
                if math.isnan(d["diff"]):
                    continue
                mark = " *" if d["lo"] > 0 or d["hi"] < 0 else ""
                span = "—" if math.isnan(d["lo"]) else f"[{_fmt(d['lo'], h)}, {_fmt(d['hi'], h)}]"
                md.append(f"| {TESTSET_TITLES.get(testset, testset)} | {name} | {key[-1]} | {h} | "
                          f"{_fmt(d['diff'], h)}{mark} | {span} | {len(ra)} vs {len(rb)} |")
                w.writerow(["seeds_diff", testset, name, f"{key}.{h}", repr(d["diff"]), repr(d["lo"]),
                            repr(d["hi"]), ""])
    return md


def _paired_section(pairs: list, w) -> list[str]:
    """Markdown of the paired differences (and their CSV rows, table `paired`, model `B - A`)."""
    first = pairs[0][2]
    md = ["## Paired differences (each row minus the first row of its test set, on the same samples)", "",
          f"B - A, the {100 * first['confidence']:.0f}% paired-bootstrap interval ({first['resamples']:,} resamples "
          "drawing the same image groups for both) and the two-sided bootstrap p-value; * marks an interval that "
          "excludes 0.", "", "| Test set | B - A | Table | Metric | B - A | interval | p |",
          "|---|---|---|---|---:|---|---:|"]
    for a, b, diff in pairs:
        name = f"{b.model} - {a.model}"
        for table, (_, cols) in TABLES.items():
            for header, key in cols:
                d = diff["tables"].get(table, {}).get(key)
                if d is None:
                    continue
                mark = " *" if d["lo"] > 0 or d["hi"] < 0 else ""
                md.append(f"| {TESTSET_TITLES.get(a.testset, a.testset)} | {name} | {table[-1]} | {header} | "
                          f"{_fmt(d['diff'], header)}{mark} | [{_fmt(d['lo'], header)}, {_fmt(d['hi'], header)}] | "
                          f"{d['p']:.4f} |")
                w.writerow(["paired", a.testset, name, f"{table}.{header}", repr(d["diff"]), repr(d["lo"]),
                            repr(d["hi"]), repr(d["p"])])
    return md


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
        iv = (r.metrics.get("intervals") or {}).get("tau_U")
        if tau is not None:
            ax.axhline(tau, color="tab:red", linestyle="--", label=f"τU = {tau:.4f}")
            if iv and math.isfinite(iv["lo"]):   # its bootstrap interval as a band
                ax.axhspan(iv["lo"], iv["hi"], color="tab:red", alpha=0.15,
                           label=f"{100 * r.metrics['intervals']['confidence']:.0f}% interval")
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


def paired_rows(results: list[Result]) -> list:
    """[(A, B, paired differences)] for each test set with exactly two measured rows A, B (two checkpoints) that
    scored the same samples; scored under A's config.yaml."""
    by_set: dict[str, list[Result]] = {}
    for r in _order(results):                  # the paper's order of test sets
        if not r.published:
            by_set.setdefault(r.testset, []).append(r)
    pairs = []
    for rows in by_set.values():
        if len(rows) != 2 or not _same_samples(*rows):
            continue
        a, b = rows
        cfg = load_config(EvalConfig, a.path / "config.yaml") if (a.path / "config.yaml").is_file() else EvalConfig()
        if cfg.metrics.bootstrap:
            pairs.append((a, b, paired_differences(a.store(), b.store(), cfg)))
    return pairs


def _same_samples(a: Result, b: Result) -> bool:
    da, db = ((x.info.get("coverage") or {}).get("keys_sha256") for x in (a, b))
    return bool(da and da == db)


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
    seed_groups(results)                # labels the rows of multi-seed recipes <model>/seed-<k> everywhere
    md, table_csv = tables(results + (paper_results(r.testset for r in results) if paper else []),
                           pairs=paired_rows(results))
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
