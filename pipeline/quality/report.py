"""The quality report a user reads before training: `python -m pipeline.quality SHARDS_OR_MANIFEST --out DIR`.

Reads a shard folder's `manifest.json` and `quality.jsonl` (pipeline.shard.manifest) and writes into DIR:
`report.md` (counts, the flags and their rules, quantiles of the figures, counts per class, the duplicate clusters and
the flagged clips, what to do about them), histograms `loudness.png`, `silence.png`, `motion.png`, `duration.png`,
the full lists `flagged.csv` and `duplicates.csv`, and `quality.json` (the summary behind the tables and the inputs
it was made from). DIR receives only these files, replaced as a set.
"""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from pipeline.common.atomic import atomic_write_json, atomic_write_text  # noqa: E402
from pipeline.common.cli import Parser, UserError  # noqa: E402
from pipeline.common.outputs import replacing  # noqa: E402
from pipeline.shard.figures import FLOOR_DBFS, NEAR_FULL_SCALE, THUMB  # noqa: E402
from pipeline.shard.screening import EXCLUDABLE  # noqa: E402

FILES = ("report.md", "loudness.png", "silence.png", "motion.png", "duration.png", "flagged.csv", "duplicates.csv",
         "quality.json")
LISTED = 50            # rows of each long list shown in report.md (the CSVs hold all)


class QualityError(UserError):
    """An input that is not a shard folder with quality figures."""


def read_inputs(path: Path) -> tuple[Path, dict, list[dict]]:
    """(shard folder, manifest, quality.jsonl lines) of a shard folder or its manifest.json."""
    folder = path.parent if path.is_file() else path
    manifest_path = folder / "manifest.json"
    try:
        manifest = json.loads(manifest_path.read_text())
    except FileNotFoundError:
        raise QualityError(f"{manifest_path}: no manifest (shard the corpus with `python -m pipeline.shard` first, "
                           f"or merge its parts)") from None
    except (OSError, ValueError) as exc:
        raise QualityError(f"{manifest_path}: unreadable ({exc})") from None
    if not isinstance(manifest, dict) or "counts" not in manifest:
        raise QualityError(f"{manifest_path}: not a shard manifest")
    if not manifest.get("quality"):
        raise QualityError(f"{manifest_path}: sharded without quality figures (--no-quality, or an older sharder); "
                           f"re-shard to get them")
    lines_path = folder / "quality.jsonl"
    try:
        lines = [json.loads(x) for x in lines_path.read_text().splitlines() if x.strip()]
    except FileNotFoundError:
        raise QualityError(f"{lines_path}: missing (the manifest promises quality figures)") from None
    except (OSError, ValueError) as exc:
        raise QualityError(f"{lines_path}: unreadable ({exc})") from None
    if len(lines) != manifest["quality"]["decoded"] or not all(isinstance(q, dict) and "figures" in q for q in lines):
        raise QualityError(f"{lines_path}: {len(lines)} clips, the manifest counts {manifest['quality']['decoded']}; "
                           f"merge again (`python -m pipeline.shard merge --out {folder}`)")
    return folder, manifest, lines


def per_class(lines: list[dict]) -> list[dict]:
    rows: dict[str, dict] = {}
    for q in lines:
        r = rows.setdefault(q["label"], {"label": q["label"], "decoded": 0, "written": 0, "excluded": 0,
                                         **{f: 0 for f in EXCLUDABLE}})
        r["decoded"] += 1
        r[q["status"]] += 1
        for f in q["flags"]:
            r[f] += 1
    return sorted(rows.values(), key=lambda r: r["label"])


def summary(manifest: dict, lines: list[dict], source: Path) -> dict:
    q = manifest["quality"]
    labels = {x["id"]: (x["label"], x["split"], x["status"]) for x in lines}
    return {"source": str(source), "counts": manifest["counts"], "thresholds": q["thresholds"],
            "exclude": q["exclude"], "decoded": q["decoded"], "flagged": q["flagged"], "channels": q["channels"],
            "not_judged_static": q["not_judged_static"], "quantiles": q["quantiles"], "per_class": per_class(lines),
            "duplicate_clusters": [[{"id": c, "label": labels[c][0], "split": labels[c][1], "status": labels[c][2]}
                                    for c in cluster] for cluster in q["duplicate_clusters"]]}


def _histogram(path: Path, values: np.ndarray, title: str, xlabel: str, *, lines: dict[str, float] | None = None,
               log: bool = False) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if values.size:
        if log:
            lo = max(float(values.min()), 1e-2)
            bins = np.geomspace(lo, max(float(values.max()), lo * 10), 41)
            ax.hist(np.clip(values, lo, None), bins=bins, color="#4c72b0")
            ax.set_xscale("log")
        else:
            ax.hist(values, bins=40, color="#4c72b0")
    for name, x in (lines or {}).items():
        ax.axvline(x, color="#c44e52", linestyle="--", linewidth=1)
        ax.text(x, ax.get_ylim()[1] * 0.95, f" {name}", color="#c44e52", va="top", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("clips")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _csv(rows: list[list]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _fmt(x) -> str:
    return "-" if x is None else (f"{x:g}" if isinstance(x, float) else str(x))


RULES = {
    "muted": "at least {muted_fraction:g} of its 100 ms frames below {silence_dbfs:g} dBFS",
    "static": "no cell of the {thumb} x {thumb} luma or {half} x {half} chroma thumbnails of its sampled frames "
              "changes by {static_motion:g} levels or more",
    "clipped": "at least {clipped_fraction:g} of its samples at full scale (magnitude >= {near})",
    "duplicates": "centre-frame hash within {duplicate_image_bits} bits and audio hash within "
                  "{duplicate_audio_bits} bits of another clip's (the smallest id of a cluster is kept)",
}
ADVICE = """## What to do with it

- **muted**: a muted clip trained as a positive pair asks the model to localize a sound that is not there, the
  opposite of what the silence loss L_S teaches on the same input. Leave them out: `--exclude muted`.
- **static**: a still image gives the equivariance term nothing to learn from and is often a music video's cover art
  (the sound's source is not in view). Leave them out (`--exclude static`) unless the corpus is mostly stills.
- **clipped**: the audio is distorted but the source is usually still in view; keep them unless they are many in a
  class, and check that class's loudness histogram.
- **duplicates**: copies inflate a class and, across splits, leak test clips into training. `--exclude duplicates`
  keeps one clip of each cluster; look at the clusters that span splits first.
- Thresholds are options of `python -m pipeline.shard` (`--silence-dbfs`, `--muted-fraction`, `--static-motion`,
  `--clipped-fraction`, `--duplicate-image-bits`, `--duplicate-audio-bits`); look at the histograms before changing
  them. Re-sharding into a new `--out` with `--exclude ...` leaves the flagged clips out and lists each in
  `excluded.jsonl` with its reasons and figures; the counts then satisfy written + failed + missing + excluded ==
  listed.
"""


def _listed(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """A section of report.md: a table of the first LISTED rows (and how many more), or "None."."""
    out = ["", f"## {title}", ""]
    if not rows:
        return out + ["None."]
    out += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows[:LISTED]]
    if len(rows) > LISTED:
        out.append(f"| ... {len(rows) - LISTED} more |" + " |" * (len(header) - 1))
    return out


def markdown(s: dict, flagged: list[dict]) -> str:
    c, th = s["counts"], s["thresholds"]
    out = [f"# Quality of the clips of `{s['source']}`", "",
           f"Listed {c['listed']}: written {c['written']}, failed {c['failed']}, missing {c['missing']}, excluded "
           f"{c.get('excluded', 0)} (excluded for: {', '.join(s['exclude']) or 'nothing'}). Figures of the "
           f"{s['decoded']} decoded clips (written or excluded).", "",
           "## Flags", "", "| flag | rule | written | excluded | share of decoded |", "|---|---|---|---|---|"]
    for name in EXCLUDABLE:
        rule = RULES[name].format(thumb=THUMB, half=THUMB // 2, near=NEAR_FULL_SCALE, **th)
        n = s["flagged"][name]
        share = (n["written"] + n["excluded"]) / s["decoded"] if s["decoded"] else 0.0
        out.append(f"| {name} | {rule} | {n['written']} | {n['excluded']} | {share:.1%} |")
    ch = s["channels"]
    out += ["", f"Channels of the source audio: {ch['mono']} mono, {ch['distinct']} distinct, {ch['identical']} "
                f"identical (a mono recording stored as stereo), {ch['one_silent']} with one silent channel. "
                f"{s['not_judged_static']} clips had a single sampled frame and were not judged static or not.", "",
            "## Distributions", "", "| figure | min | 5% | median | 95% | max |", "|---|---|---|---|---|---|"]
    names = {"rms_dbfs": "loudness, whole clip (RMS dBFS)", "window_rms_dbfs": "loudness, centre 3 s (RMS dBFS)",
             "silent_fraction": "silent fraction of 100 ms frames", "clipped_fraction": "clipped fraction",
             "motion": "motion (levels of 0-255)", "video_seconds": "video duration (s)",
             "real_fps": "frames per second"}
    for key, label in names.items():
        qs = s["quantiles"].get(key)
        out.append(f"| {label} | " + (" | ".join(_fmt(qs[k]) for k in ("q00", "q05", "q50", "q95", "q100"))
                                      if qs else "- | - | - | - | -") + " |")
    out += ["", f"Digital silence reads {FLOOR_DBFS:g} dBFS.", "",
            "![loudness](loudness.png) ![silence](silence.png)", "", "![motion](motion.png) ![duration](duration.png)",
            "", "## Per class", "", "| class | decoded | written | excluded | " + " | ".join(EXCLUDABLE) + " |",
            "|---|---|---|---|" + "---|" * len(EXCLUDABLE)]
    for r in s["per_class"]:
        out.append(f"| {r['label']} | {r['decoded']} | {r['written']} | {r['excluded']} | "
                   + " | ".join(str(r[f]) for f in EXCLUDABLE) + " |")
    clusters = s["duplicate_clusters"]
    out += _listed(f"Duplicate clusters ({len(clusters)}; all in duplicates.csv)",
                   ["cluster", "clips (the first is kept)", "classes", "splits"],
                   [[str(k), ", ".join(m["id"] for m in cl), ", ".join(sorted({m["label"] for m in cl})),
                     ", ".join(sorted({m["split"] for m in cl}))] for k, cl in enumerate(clusters)])
    out += _listed(f"Flagged clips ({len(flagged)}; all in flagged.csv)",
                   ["clip", "split", "class", "flags", "status", "RMS dBFS", "silent", "motion", "clipped"],
                   [[q["id"], q["split"], q["label"], ", ".join(q["flags"]), q["status"]]
                    + [f"{q['figures'][k]:g}" for k in ("rms_dbfs", "silent_fraction", "motion", "clipped_fraction")]
                    for q in flagged])
    return "\n".join(out + ["", ADVICE])


def write_report(source: Path, out: Path) -> dict:
    folder, manifest, lines = read_inputs(source)
    s = summary(manifest, lines, folder)
    th = s["thresholds"]
    flagged = [q for q in lines if q["flags"]]
    fig = {k: np.array([q["figures"][k] for q in lines if q["figures"].get(k) is not None], dtype=np.float64)
           for k in ("rms_dbfs", "silent_fraction", "motion", "video_seconds")}
    with replacing(out, FILES) as stage:
        _histogram(stage / "loudness.png", fig["rms_dbfs"], "Loudness of the whole clip", "RMS dBFS")
        _histogram(stage / "silence.png", fig["silent_fraction"], "Silent share of each clip",
                   f"fraction of 100 ms frames below {th['silence_dbfs']:g} dBFS",
                   lines={"muted": th["muted_fraction"]})
        _histogram(stage / "motion.png", fig["motion"], "Motion across the sampled frames",
                   "largest thumbnail change (levels of 0-255, log scale)", lines={"static": th["static_motion"]},
                   log=True)
        _histogram(stage / "duration.png", fig["video_seconds"], "Duration of the video", "seconds")
        atomic_write_text(stage / "flagged.csv", _csv(
            [["id", "split", "label", "flags", "status", "duplicate_of", "rms_dbfs", "window_rms_dbfs",
              "silent_fraction", "clipped_fraction", "channels", "motion", "video_seconds", "real_fps"]]
            + [[q["id"], q["split"], q["label"], " ".join(q["flags"]), q["status"], q["duplicate_of"] or ""]
               + [q["figures"].get(k) for k in ("rms_dbfs", "window_rms_dbfs", "silent_fraction", "clipped_fraction",
                                                "channels", "motion", "video_seconds", "real_fps")] for q in flagged]))
        atomic_write_text(stage / "duplicates.csv", _csv(
            [["cluster", "id", "kept", "label", "split", "status"]]
            + [[k, m["id"], int(i == 0), m["label"], m["split"], m["status"]]
               for k, cl in enumerate(s["duplicate_clusters"]) for i, m in enumerate(cl)]))
        atomic_write_json(stage / "quality.json", s)
        atomic_write_text(stage / "report.md", markdown(s, flagged))
    return s


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="python -m pipeline.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("source", help="a shard folder (or its manifest.json) sharded with the quality figures")
    p.add_argument("--out", required=True, help="folder of the report (receives only the report's files)")
    a = p.parse_args(argv)
    s = write_report(Path(a.source), Path(a.out))
    flagged = {k: v["written"] + v["excluded"] for k, v in s["flagged"].items()}
    print(f"{s['decoded']} clips: " + ", ".join(f"{v} {k}" for k, v in flagged.items())
          + f"; report in {Path(a.out) / 'report.md'}")
    return 0
