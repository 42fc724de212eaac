"""Merge the finished-shard records of a sharding job into `manifest.json`, `failures.jsonl`, `excluded.jsonl` and
`quality.jsonl`.

Reads `OUT/.state/plan.json` and one `OUT/.state/{shard}.json` per shard (written by `pipeline.shard` once that shard's
tar and index carry their final names), checks that every shard is finished and that
written + failed + missing + excluded == listed, and writes the files atomically. Running it again gives the same
bytes. With the quality figures on, `quality.jsonl` holds one line per decoded clip (written or excluded: its split,
label, figures, flags and duplicate cluster) and the manifest's `quality` section the thresholds, the flag counts,
quantiles of the figures and the duplicate clusters (pipeline.shard.screening).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.common.atomic import atomic_write_json, atomic_write_text
from pipeline.shard import screening
from pipeline.shard.format import SAMPLE_RATE, ShardError

STATE_DIR = ".state"
SCAN_DIR = "scan"            # under STATE_DIR: the duplicate scan's figures, one file per shard


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, json.JSONDecodeError) as exc:
        raise ShardError(f"{path}: unreadable ({exc})") from None


def read_record(path: Path) -> dict:
    """A finished shard's record `{name, count, bytes, sha256, failures, excluded, figures}`; ShardError naming the
    file when it is unreadable or not such a record (FileNotFoundError when there is none)."""
    rec = _read_json(path)
    ok = isinstance(rec, dict) and isinstance(rec.get("count"), int) and isinstance(rec.get("failures"), list) \
        and isinstance(rec.get("bytes"), int) and all(isinstance(f, dict) and "reason" in f for f in rec["failures"]) \
        and isinstance(rec.get("excluded"), list) and isinstance(rec.get("figures"), dict) \
        and all(isinstance(e, dict) and isinstance(e.get("reasons"), list) and isinstance(e.get("figures"), dict)
                for e in rec["excluded"])
    if not ok:
        raise ShardError(f"{path}: damaged shard record (re-run the sharder: it rewrites that shard)")
    return rec


def files_problem(out: Path, name: str, rec: dict) -> str | None:
    """What is wrong with the files of a shard its record says is finished (tar or index missing, a tar of another
    size than written), one line naming the file; None when they are as written."""
    if rec["count"] == 0:
        return None                                    # every clip failed: no files were written
    tar, idx = out / f"{name}.tar", out / f"{name}.idx"
    if not (tar.is_file() and idx.is_file()):
        return f"{out}: {name}.tar or .idx is missing"
    if tar.stat().st_size != rec["bytes"]:
        return f"{tar}: {tar.stat().st_size} bytes, {rec['bytes']} when written"
    return None


def merge(out: Path) -> dict:
    """Write manifest.json + failures.jsonl of a finished job in `out`; return the manifest."""
    plan_path = out / STATE_DIR / "plan.json"
    try:
        plan = _read_json(plan_path)
    except FileNotFoundError:
        raise ShardError(f"{plan_path}: no sharding plan; run `python -m pipeline.shard` first") from None
    records, unfinished = [], []
    for shard in plan["shards"]:
        try:
            records.append((shard, read_record(out / STATE_DIR / f"{shard['name']}.json")))
        except FileNotFoundError:
            unfinished.append(shard["name"])
    if unfinished:
        raise ShardError(f"{out}: {len(unfinished)} of {len(plan['shards'])} shards are not finished "
                            f"(first: {unfinished[0]}); run the parts that write them, then merge again")
    failures = list(plan["absent"])
    excluded: list[dict] = []
    for shard, rec in records:
        problem = files_problem(out, shard["name"], rec)
        if problem:
            raise ShardError(f"{problem}; re-run the sharder to rewrite it")
        if rec["count"] + len(rec["failures"]) + len(rec["excluded"]) != len(shard["clips"]):
            raise ShardError(f"{out / STATE_DIR / (shard['name'] + '.json')}: {rec['count']} written + "
                             f"{len(rec['failures'])} failed + {len(rec['excluded'])} excluded != "
                             f"{len(shard['clips'])} planned")
        failures.extend(rec["failures"])
        excluded.extend(rec["excluded"])
    written = sum(rec["count"] for _, rec in records)
    missing = sum(1 for f in failures if f["reason"] == "missing")
    failed = len(failures) - missing
    if written + failed + missing + len(excluded) != plan["listed"]:
        raise ShardError(f"{out}: accounting does not add up: written {written} + failed {failed} + missing "
                         f"{missing} + excluded {len(excluded)} != listed {plan['listed']}")
    shards = [{"name": s["name"], "split": s["split"], "count": r["count"], "bytes": r["bytes"], "sha256": r["sha256"]}
              for s, r in records if r["count"] > 0]
    splits = {name: {"count": sum(s["count"] for s in shards if s["split"] == name),
                     "shards": [s["name"] for s in shards if s["split"] == name]} for name in plan["splits"]}
    settings = plan["settings"]
    lines, quality = _quality(plan, records, excluded)
    result = {"format": 1, "classes": plan["classes"],
              "counts": {"listed": plan["listed"], "written": written, "failed": failed, "missing": missing,
                         "excluded": len(excluded)},
              "splits": splits, "shards": shards, "sample_rate": SAMPLE_RATE,
              "audio_format": settings["audio_format"], "frame_size": settings["frame_size"],
              "frames": settings["frames"], "min_duration": settings["min_duration"], "quality": quality}
    atomic_write_text(out / "failures.jsonl", "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures))
    atomic_write_text(out / "excluded.jsonl", "".join(json.dumps(e, sort_keys=True) + "\n" for e in excluded))
    atomic_write_text(out / "quality.jsonl", "".join(json.dumps(q, sort_keys=True) + "\n" for q in lines))
    atomic_write_json(out / "manifest.json", result)
    for stale in [p for d in (out, out / STATE_DIR, out / STATE_DIR / SCAN_DIR) for p in d.glob(".*.tmp")]:
        stale.unlink()
    return result


QUANTILES = (0.0, 0.05, 0.5, 0.95, 1.0)
SUMMARISED = ("rms_dbfs", "window_rms_dbfs", "silent_fraction", "clipped_fraction", "motion", "video_seconds",
              "real_fps")


def _quality(plan: dict, records: list[tuple[dict, dict]], excluded: list[dict]) -> tuple[list[dict], dict | None]:
    """The lines of quality.jsonl (plan order) and the manifest's quality section; ([], None) without figures."""
    settings = plan["settings"]
    if not settings.get("quality"):
        return [], None
    th = screening.Thresholds.of(settings)
    status = {cid: ("written", fig) for _, rec in records for cid, fig in rec["figures"].items()}
    status.update({e["id"]: ("excluded", e["figures"]) for e in excluded})
    clusters = screening.clusters_of({cid: f for cid, (_, f) in status.items()}, th)
    cluster_of = {cid: k for k, c in enumerate(clusters) for cid in c}
    kept = screening.duplicates_of(clusters)
    reasons = {e["id"]: e["reasons"] for e in excluded}
    lines = []
    for shard in plan["shards"]:
        for cid, ytid, start, label, class_index, split in shard["clips"]:
            if cid not in status:
                continue
            state, fig = status[cid]
            flags = screening.flags(fig, th) + (["duplicates"] if cid in kept else [])
            lines.append({"id": cid, "split": split, "label": label, "class_index": class_index, "status": state,
                          "excluded_for": reasons.get(cid, []), "flags": flags, "figures": fig,
                          "duplicate_cluster": cluster_of.get(cid), "duplicate_of": kept.get(cid)})
    flag_counts = {name: {state: sum(1 for q in lines if q["status"] == state and name in q["flags"])
                          for state in ("written", "excluded")} for name in screening.EXCLUDABLE}
    channel_counts = {rel: sum(1 for q in lines if q["figures"]["channels"] == rel)
                      for rel in ("mono", "identical", "one_silent", "distinct")}
    summary = {}
    for key in SUMMARISED:
        values = np.array([q["figures"][key] for q in lines if q["figures"].get(key) is not None], dtype=np.float64)
        summary[key] = ({f"q{round(p * 100):02d}": round(float(np.quantile(values, p)), 4) for p in QUANTILES}
                        if values.size else None)
    return lines, {"thresholds": th.as_dict(), "exclude": list(screening.parse_exclude(settings.get("exclude", ""))),
                   "decoded": len(lines), "flagged": flag_counts, "channels": channel_counts,
                   "not_judged_static": sum(1 for q in lines if q["figures"]["sampled_frames"] < 2),
                   "quantiles": summary, "duplicate_clusters": clusters}
