"""Merge the finished-shard records of a sharding job into `manifest.json` and `failures.jsonl`.

Reads `OUT/.state/plan.json` and one `OUT/.state/{shard}.json` per shard (written by `pipeline.shard` once that shard's
tar and index carry their final names), checks that every shard is finished and that
written + failed + missing == listed, and writes both files atomically. Running it again gives the same bytes.
"""
from __future__ import annotations

import json
from pathlib import Path

from pipeline.common.atomic import atomic_write_json, atomic_write_text
from pipeline.shard.format import SAMPLE_RATE, ShardError

STATE_DIR = ".state"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise
    except (OSError, json.JSONDecodeError) as exc:
        raise ShardError(f"{path}: unreadable ({exc})") from None


def read_record(path: Path) -> dict:
    """A finished shard's record `{name, count, bytes, sha256, failures}`; ShardError naming the file when it is
    unreadable or not such a record (FileNotFoundError when there is none)."""
    rec = _read_json(path)
    ok = isinstance(rec, dict) and isinstance(rec.get("count"), int) and isinstance(rec.get("failures"), list) \
        and isinstance(rec.get("bytes"), int) and all(isinstance(f, dict) and "reason" in f for f in rec["failures"])
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
    for shard, rec in records:
        problem = files_problem(out, shard["name"], rec)
        if problem:
            raise ShardError(f"{problem}; re-run the sharder to rewrite it")
        if rec["count"] + len(rec["failures"]) != len(shard["clips"]):
            raise ShardError(f"{out / STATE_DIR / (shard['name'] + '.json')}: {rec['count']} written + "
                                f"{len(rec['failures'])} failed != {len(shard['clips'])} planned")
        failures.extend(rec["failures"])
    written = sum(rec["count"] for _, rec in records)
    missing = sum(1 for f in failures if f["reason"] == "missing")
    failed = len(failures) - missing
    if written + failed + missing != plan["listed"]:
        raise ShardError(f"{out}: accounting does not add up: written {written} + failed {failed} + missing "
                            f"{missing} != listed {plan['listed']}")
    shards = [{"name": s["name"], "split": s["split"], "count": r["count"], "bytes": r["bytes"], "sha256": r["sha256"]}
              for s, r in records if r["count"] > 0]
    splits = {name: {"count": sum(s["count"] for s in shards if s["split"] == name),
                     "shards": [s["name"] for s in shards if s["split"] == name]} for name in plan["splits"]}
    settings = plan["settings"]
    result = {"format": 1, "classes": plan["classes"],
              "counts": {"listed": plan["listed"], "written": written, "failed": failed, "missing": missing},
              "splits": splits, "shards": shards, "sample_rate": SAMPLE_RATE,
              "audio_format": settings["audio_format"], "frame_size": settings["frame_size"],
              "frames": settings["frames"], "min_duration": settings["min_duration"]}
    atomic_write_text(out / "failures.jsonl", "".join(json.dumps(f, sort_keys=True) + "\n" for f in failures))
    atomic_write_json(out / "manifest.json", result)
    for stale in list(out.glob(".*.tmp")) + list((out / STATE_DIR).glob(".*.tmp")):
        stale.unlink()
    return result
