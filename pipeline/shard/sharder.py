"""The sharder behind `python -m pipeline.shard`: `ShardConfig` and `run(cfg)`, a VGGSound-like corpus into WebDataset
tars + DALI indexes.

The job in three steps, each restartable:
1. Plan (deterministic from the csv, the list file and the settings): select the clips, hold out `val_fraction` of the
   training clips (lowest seeded hash of the id), shuffle each split with the seed, cut into shards of `shard_size`.
   The plan is stored in `OUT/.state/plan.json`; a later run with other inputs or settings is refused.
2. Write shards: workers decode and encode clips (`pipeline.shard.media`), the main process writes each shard's tar
   under a temporary name, renames it, builds its DALI index, and only then records the shard as finished in
   `OUT/.state/{shard}.json` (count, bytes, sha256, the failures of its clips). Finished shards are skipped on re-runs,
   so a killed job resumes and ends with the same bytes. With `--num-parts P --part k` a job writes only the k-th
   contiguous range of shards (a Slurm array task per part).
3. Merge (`pipeline.shard.manifest`): after the last shard, or with `python -m pipeline.shard merge --out DIR` after
   every part: `manifest.json` and `failures.jsonl`, checking written + failed + missing == listed.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import random
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

from tqdm import tqdm
from wds2idx import IndexCreator

from pipeline.common.atomic import atomic_open, atomic_write_json
from pipeline.common.config import save_config, to_dict
from pipeline.common.outputs import writer_lock
from pipeline.common.procs import default_workers
from pipeline.shard import listing, manifest, screening, work
from pipeline.shard.format import META_EXT, ShardError

STATE_DIR = manifest.STATE_DIR
PLAN_FILE = "plan.json"
# Settings that do not change what is written: a re-run may change them.
EXECUTION_FIELDS = ("out", "workers", "num_parts", "part", "clip_timeout")


@dataclass
class ShardConfig:
    src: str = "vggsound"
    out: str = "shards/vggsound"
    csv: str = ""                      # default: SRC/vggsound.csv
    list: str = ""                     # optional file of clip ids (one a line) restricting the csv
    split: Literal["train", "test", "all"] = "train"
    val_fraction: float = 0.05         # of the training clips, held out into val-* shards
    seed: int = 0
    shard_size: int = 1000             # clips listed per shard (failed clips leave it smaller)
    frame_size: int = 256              # short side of stored frames
    frames: int = 1                    # > 1: also K evenly spaced frames `{key}.frame{k}.jpg`
    audio_format: Literal["flac", "wav"] = "wav"  # why wav: docs/ARCHITECTURE.md section 2
    jpeg_quality: int = 90
    min_duration: float = 3.0          # seconds of audio below which a clip is `too_short`
    layout: Literal["auto", "video", "extracted"] = "auto"
    video_dir: str = "video"
    frames_dir: str = "frames"
    audio_dir: str = "audio"
    workers: int = 0                   # 0: every core this process may use
    clip_timeout: float = 120.0        # s without a clip's result before it is recorded as `timeout` (0: no limit);
    # a 10 s VGGSound clip takes well under a second, so only a stalled input (a hung network mount...) reaches it
    num_parts: int = 1
    part: int = 0
    # quality figures (pipeline.shard.figures) in each sample's JSON and in the manifest
    quality: bool = True
    exclude: str = ""                  # comma-separated of muted, static, clipped, duplicates: left out of the shards
    # thresholds of the flags (defaults and meaning: pipeline.shard.screening.Thresholds)
    silence_dbfs: float = screening.Thresholds.silence_dbfs
    muted_fraction: float = screening.Thresholds.muted_fraction
    static_motion: float = screening.Thresholds.static_motion
    clipped_fraction: float = screening.Thresholds.clipped_fraction
    duplicate_image_bits: int = screening.Thresholds.duplicate_image_bits
    duplicate_audio_bits: int = screening.Thresholds.duplicate_audio_bits


def check_config(cfg: ShardConfig) -> None:
    problems = []
    if cfg.shard_size < 1:
        problems.append(f"shard_size must be >= 1, got {cfg.shard_size}")
    if not 0.0 <= cfg.val_fraction < 1.0:
        problems.append(f"val_fraction must be in [0, 1), got {cfg.val_fraction}")
    if cfg.frame_size < 8:
        problems.append(f"frame_size must be >= 8, got {cfg.frame_size}")
    if cfg.frames < 1:
        problems.append(f"frames must be >= 1, got {cfg.frames}")
    if not 1 <= cfg.jpeg_quality <= 100:
        problems.append(f"jpeg_quality must be in [1, 100], got {cfg.jpeg_quality}")
    if cfg.min_duration < 0:
        problems.append(f"min_duration must be >= 0, got {cfg.min_duration}")
    if cfg.workers < 0:
        problems.append(f"workers must be >= 0, got {cfg.workers}")
    if not cfg.clip_timeout >= 0 or cfg.clip_timeout == float("inf"):
        problems.append(f"clip_timeout must be a number of seconds >= 0 (0: no limit), got {cfg.clip_timeout}")
    if cfg.num_parts < 1 or not 0 <= cfg.part < cfg.num_parts:
        problems.append(f"part must be in [0, num_parts), got part {cfg.part} of {cfg.num_parts}")
    try:
        if screening.parse_exclude(cfg.exclude) and not cfg.quality:
            problems.append("exclude needs the quality figures (quality=true)")
    except ValueError as exc:
        problems.append(f"exclude: {exc}")
    if not cfg.silence_dbfs < 0:
        problems.append(f"silence_dbfs must be below 0 dBFS, got {cfg.silence_dbfs}")
    for name in ("muted_fraction", "clipped_fraction"):
        if not 0 < getattr(cfg, name) <= 1:
            problems.append(f"{name} must be in (0, 1], got {getattr(cfg, name)}")
    if not cfg.static_motion >= 0:
        problems.append(f"static_motion must be >= 0, got {cfg.static_motion}")
    for name in ("duplicate_image_bits", "duplicate_audio_bits"):
        if not 0 <= getattr(cfg, name) <= 63:
            problems.append(f"{name} must be in [0, 63], got {getattr(cfg, name)}")
    if problems:
        raise ShardError("; ".join(problems))


def settings_of(cfg: ShardConfig) -> dict:
    return {k: v for k, v in to_dict(cfg).items() if k not in EXECUTION_FIELDS}


# ---------------------------------------------------------------------------------------------------------- plan
def _val_rank(seed: int, cid: str) -> str:
    return hashlib.sha256(f"{seed}:{cid}".encode()).hexdigest()


def build_plan(cfg: ShardConfig) -> dict:
    """The deterministic plan: settings, classes, listed count, clips absent from the csv, and every shard's clips."""
    src = Path(cfg.src)
    layout = listing.detect_layout(src, cfg.layout, cfg.video_dir, cfg.frames_dir, cfg.audio_dir)
    csv_path = Path(cfg.csv) if cfg.csv else src / "vggsound.csv"
    rows = listing.read_csv(csv_path)
    classes = listing.classes_of(rows)
    class_index = {c: i for i, c in enumerate(classes)}
    wanted = ("train", "test") if cfg.split == "all" else (cfg.split,)
    absent: list[dict] = []
    if cfg.list:
        by_id = {r.id: r for r in rows}
        selected, other_split = [], 0
        for cid in listing.read_id_list(Path(cfg.list)):
            row = by_id.get(cid)
            if row is None:
                absent.append(work.failure(cid, layout, "missing", f"not in {csv_path}"))
            elif row.split in wanted:
                selected.append(row)
            else:
                other_split += 1
        if other_split:
            print(f"note: {other_split} clips of {cfg.list} are not in split {cfg.split!r} and are left out",
                  file=sys.stderr)
    else:
        selected = [r for r in rows if r.split in wanted]
    if not selected and not absent:
        raise ShardError(f"{csv_path}: no clips of split {cfg.split!r}" + (f" in {cfg.list}" if cfg.list else ""))

    groups: dict[str, list[listing.Row]] = {}
    if "train" in wanted:
        train = [r for r in selected if r.split == "train"]
        n_val = round(len(train) * cfg.val_fraction)
        val_ids = set(sorted((r.id for r in train), key=lambda c: _val_rank(cfg.seed, c))[:n_val])
        groups["train"] = [r for r in train if r.id not in val_ids]
        groups["val"] = [r for r in train if r.id in val_ids]
    if "test" in wanted:
        groups["test"] = [r for r in selected if r.split == "test"]
    shards = []
    for group, members in groups.items():
        members = sorted(members, key=lambda r: r.id)
        random.Random(f"{cfg.seed}:{group}").shuffle(members)
        for i in range(0, len(members), cfg.shard_size):
            chunk = members[i:i + cfg.shard_size]
            shards.append({"name": f"{group}-{i // cfg.shard_size:06d}", "split": group,
                           "clips": [[r.id, r.ytid, r.start, r.label, class_index[r.label], group] for r in chunk]})
    layout_dict = {"kind": layout.kind, "video_dir": str(layout.video_dir), "frames_dir": str(layout.frames_dir),
                   "audio_dir": str(layout.audio_dir)}
    return {"format": 1, "settings": settings_of(cfg), "layout": layout_dict, "classes": classes,
            "splits": list(groups), "listed": len(selected) + len(absent), "absent": absent, "shards": shards}


def check_out(out: Path) -> None:
    """Refuse an output folder that is neither new, empty, nor a shard folder (its writer locks aside)."""
    if out.exists() and not out.is_dir():
        raise ShardError(f"{out}: exists and is not a folder")
    if not (out / STATE_DIR / PLAN_FILE).exists() and out.is_dir() and \
            any(p.name != STATE_DIR and not p.name.startswith(".lock") for p in out.iterdir()):
        raise ShardError(f"{out}: not empty and not a shard folder (no {STATE_DIR}/{PLAN_FILE}); use a new --out")


PATH_SETTINGS = ("src", "csv", "list")


def _spelling_free(plan: dict) -> dict:
    """The plan with its paths resolved (relative ones against this process's folder, links followed), so that the
    same inputs spelt another way (absolute or relative, through a link) are the same plan. The stored plan keeps
    the spelling of the run that made it."""
    if not isinstance(plan, dict) or not isinstance(plan.get("settings"), dict):
        return plan
    real = dict(plan, settings=dict(plan["settings"]))
    for key in PATH_SETTINGS:
        if real["settings"].get(key):
            real["settings"][key] = os.path.realpath(real["settings"][key])
    if isinstance(plan.get("layout"), dict):
        real["layout"] = {k: (os.path.realpath(v) if k.endswith("_dir") and v else v)
                          for k, v in plan["layout"].items()}
    if isinstance(plan.get("absent"), list):   # their paths follow the spelling of src: compare what is absent
        real["absent"] = [{k: v for k, v in f.items() if k != "path"} if isinstance(f, dict) else f
                          for f in plan["absent"]]
    return real


def _load_or_store_plan(cfg: ShardConfig, plan: dict) -> None:
    """Store the plan on a first run; on later runs (resume, other parts) insist on the same plan."""
    out = Path(cfg.out)
    plan_path = out / STATE_DIR / PLAN_FILE
    check_out(out)
    if plan_path.exists():
        try:
            stored = json.loads(plan_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ShardError(f"{plan_path}: unreadable plan ({exc}); delete {out} and start again") from None
        stored_free, plan_free = _spelling_free(stored), _spelling_free(plan)
        if stored_free != plan_free:
            diff = sorted(k for k in plan_free["settings"]
                          if stored_free.get("settings", {}).get(k) != plan_free["settings"][k])
            what = f"settings {diff}" if diff else "inputs (csv, list or files)"
            raise ShardError(f"{out}: was sharded with other {what}; use another --out or delete it")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(plan_path, plan)
    if not (out / "config.yaml").exists():  # also when a run was killed between the plan and the config
        save_config(cfg, out / "config.yaml")


# ------------------------------------------------------------------------------------------------ shard output
class _HashingWriter:
    """File wrapper that counts and hashes what tarfile writes."""

    def __init__(self, fh):
        self.fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.fh.write(data)

    def tell(self) -> int:
        return self.size


def _tarinfo(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def write_shard(out: Path, name: str, samples: Iterator[tuple[str, dict[str, bytes] | None, dict | None]]) -> dict:
    """Write one shard from (id, members, None), (id, None, failure) or (id, None, exclusion) results (an exclusion
    has `reasons`); return its record (also stored as finished), which keeps the quality figures of every written
    clip."""
    tar_path, idx_path = out / f"{name}.tar", out / f"{name}.idx"
    failures: list[dict] = []
    excluded: list[dict] = []
    figures: dict[str, dict] = {}
    record = {"name": name, "count": 0, "bytes": 0, "sha256": None}
    opened = None
    try:
        for cid, members, problem in samples:
            if problem is not None:
                (excluded if "reasons" in problem else failures).append(problem)
                continue
            if opened is None:
                ctx = atomic_open(tar_path, "wb")
                fh = ctx.__enter__()
                os.fchmod(fh.fileno(), 0o644)
                hashing = _HashingWriter(fh)
                tar = tarfile.open(fileobj=hashing, mode="w", format=tarfile.USTAR_FORMAT)
                opened = (ctx, hashing, tar)
            for ext, data in members.items():
                opened[2].addfile(_tarinfo(f"{cid}.{ext}", len(data)), io.BytesIO(data))
            quality = json.loads(members[META_EXT]).get("quality")
            if quality:
                figures[cid] = quality
            record["count"] += 1
    except BaseException:
        if opened is not None:
            opened[0].__exit__(*sys.exc_info())
        raise
    if opened is not None:
        ctx, hashing, tar = opened
        tar.close()
        ctx.__exit__(None, None, None)
        record["bytes"], record["sha256"] = hashing.size, hashing.sha.hexdigest()
        tmp_idx = out / f".{name}.idx.tmp"
        with IndexCreator(str(tar_path), str(tmp_idx), verbose=False) as creator:
            creator.create_index()
        with open(tmp_idx, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_idx, idx_path)
    record.update(failures=failures, excluded=excluded, figures=figures)
    atomic_write_json(out / STATE_DIR / f"{name}.json", record)
    return record


def shard_done(out: Path, name: str) -> bool:
    """True when the shard was finished and its tar still has the size it was written with (a truncated or replaced
    tar, a missing index or a damaged record make it unfinished: it is written again)."""
    try:
        rec = manifest.read_record(out / STATE_DIR / f"{name}.json")
    except FileNotFoundError:
        return False
    except ShardError as exc:
        print(f"warning: {exc}", file=sys.stderr)
        return False
    problem = manifest.files_problem(out, name, rec)
    if problem:
        print(f"warning: {problem}; writing it again", file=sys.stderr)
    return problem is None


def part_range(num_shards: int, num_parts: int, part: int) -> range:
    """The contiguous range of shard positions that part `part` of `num_parts` writes."""
    return range(part * num_shards // num_parts, (part + 1) * num_shards // num_parts)


@dataclass
class RunSummary:
    shards_written: int
    shards_skipped: int
    clips_processed: int
    written: int
    failed: int
    excluded: int
    manifest: dict | None


def run(cfg: ShardConfig, *, progress: bool = True) -> RunSummary:
    """Plan, write this part's unfinished shards, and merge when this is the only part. One writer per part: a
    second run of the same part into the same folder is refused while the first runs."""
    check_config(cfg)
    check_out(Path(cfg.out))    # before the lock file is made: a foreign folder is not touched
    single = cfg.num_parts == 1
    with writer_lock(cfg.out, cfg.out if single else f"{cfg.out} (part {cfg.part} of {cfg.num_parts})",
                     name=".lock" if single else f".lock-part{cfg.part}of{cfg.num_parts}"):
        return _run(cfg, progress)


def _run(cfg: ShardConfig, progress: bool) -> RunSummary:
    plan = build_plan(cfg)
    _load_or_store_plan(cfg, plan)
    out = Path(cfg.out)
    mine = [plan["shards"][i] for i in part_range(len(plan["shards"]), cfg.num_parts, cfg.part)]
    todo = [s for s in mine if not shard_done(out, s["name"])]
    for s in todo:
        for stale in out.glob(f".{s['name']}.*.tmp"):
            stale.unlink()
    clips = [c for s in todo for c in s["clips"]]
    workers = default_workers(cfg.workers)
    summary = RunSummary(0, len(mine) - len(todo), len(clips), 0, 0, 0, None)
    opts = work.ClipOptions(frames=cfg.frames, min_duration=cfg.min_duration, frame_size=cfg.frame_size,
                            audio_format=cfg.audio_format, jpeg_quality=cfg.jpeg_quality,
                            silence_dbfs=cfg.silence_dbfs if cfg.quality else None)
    layout = listing.Layout(plan["layout"]["kind"], *(Path(plan["layout"][k])
                                                      for k in ("video_dir", "frames_dir", "audio_dir")))
    exclude = screening.parse_exclude(cfg.exclude)
    th = screening.Thresholds.of(plan["settings"])

    def reasons(fig: dict) -> list[str]:
        return [f for f in screening.flags(fig, th) if f in exclude]
    duplicates: dict[str, tuple[str, dict]] = {}
    if "duplicates" in exclude and todo:
        with work.ClipPool(opts, layout, workers, work=work.scan_clip, timeout=cfg.clip_timeout) as pool:
            duplicates = _duplicate_scan(cfg, plan, pool, th, progress)

    def screened(result: tuple) -> tuple:
        """A written clip that raises a flag named in `exclude` becomes an exclusion (its members are dropped)."""
        cid, members, failure = result
        if members is None or not exclude:
            return result
        fig = json.loads(members[META_EXT])["quality"]
        why = reasons(fig)
        return (cid, None, _exclusion(cid, layout, why, fig)) if why else result

    bar = tqdm(total=len(clips), unit="clip", desc=f"shard part {cfg.part}/{cfg.num_parts}", disable=not progress,
               dynamic_ncols=True)
    with work.ClipPool(opts, layout, workers, timeout=cfg.clip_timeout) as pool:
        for s in todo:
            def samples(clips=s["clips"]):
                decoded = pool.map([c for c in clips if c[0] not in duplicates])
                for c in clips:
                    if c[0] in duplicates:
                        kept, fig = duplicates[c[0]]
                        result = c[0], None, dict(_exclusion(c[0], layout, reasons(fig) + ["duplicates"], fig),
                                                  duplicate_of=kept)
                    else:
                        result = screened(next(decoded))
                    bar.update(1)
                    yield result
            record = write_shard(out, s["name"], samples())
            summary.shards_written += record["count"] > 0      # a shard whose clips all failed is not written
            summary.written += record["count"]
            summary.failed += len(record["failures"])
            summary.excluded += len(record["excluded"])
            bar.set_postfix(written=summary.written, failed=summary.failed, excluded=summary.excluded, refresh=False)
    bar.close()
    if cfg.num_parts == 1:
        summary.manifest = manifest.merge(out)
    return summary


def _exclusion(cid: str, layout: listing.Layout, reasons: list[str], fig: dict) -> dict:
    return {"id": cid, "path": work.failure(cid, layout, "", "")["path"], "reasons": reasons, "figures": fig}


SCAN_DIR = manifest.SCAN_DIR


def _read_scan(path: Path) -> dict | None:
    try:
        scan = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError):
        print(f"warning: {path}: damaged; scanning that shard again", file=sys.stderr)
        return None
    ok = isinstance(scan, dict) and isinstance(scan.get("figures"), dict) and all(
        isinstance(f, dict) and "image_hash" in f and "audio_hash" in f for f in scan["figures"].values())
    if not ok:
        print(f"warning: {path}: not a scan record; scanning that shard again", file=sys.stderr)
    return scan if ok else None


def _duplicate_scan(cfg: ShardConfig, plan: dict, pool: work.ClipPool, th: screening.Thresholds,
                    progress: bool) -> dict[str, tuple[str, dict]]:
    """The duplicates among every clip of the plan: {duplicate id: (kept id, its figures)}. Each shard's figures are
    stored in `.state/scan/{shard}.json` once scanned (a re-run or another part reuses them); a part starts with its
    own shards and goes on round the others, so parts running at once share the scan and a lone part does it all."""
    out = Path(cfg.out)
    scan_dir = out / STATE_DIR / SCAN_DIR
    scan_dir.mkdir(exist_ok=True)
    shards = plan["shards"]
    first = part_range(len(shards), cfg.num_parts, cfg.part).start
    figures: dict[str, dict] = {}
    pending = []
    for s in shards[first:] + shards[:first]:
        scan = _read_scan(scan_dir / f"{s['name']}.json")
        if scan is None:
            pending.append(s)
        else:
            figures.update(scan["figures"])
    bar = tqdm(total=sum(len(s["clips"]) for s in pending), unit="clip", disable=not progress, dynamic_ncols=True,
               desc=f"duplicate scan part {cfg.part}/{cfg.num_parts}")
    for s in pending:
        scan = _read_scan(scan_dir / f"{s['name']}.json")     # another part may have scanned it meanwhile
        if scan is None:
            found = {}
            for cid, fig, failure in pool.map(s["clips"]):
                bar.update(1)
                if fig is not None:
                    found[cid] = fig
            scan = {"figures": found}
            atomic_write_json(scan_dir / f"{s['name']}.json", scan)
        else:
            bar.update(len(s["clips"]))
        figures.update(scan["figures"])
    bar.close()
    clusters = screening.clusters_of(figures, th)
    return {cid: (kept, figures[cid]) for cid, kept in screening.duplicates_of(clusters).items()}


def check_something_written(cfg: ShardConfig, summary: RunSummary) -> None:
    """A run that had clips to shard and wrote none failed (every failure is in failures.jsonl / .state)."""
    written = summary.manifest["counts"]["written"] if summary.manifest is not None else summary.written
    if summary.clips_processed and written == 0:
        where = "failures.jsonl" if summary.manifest is not None else f"{STATE_DIR}/ (merge to get failures.jsonl)"
        raise ShardError(f"{cfg.out}: no clip could be sharded; the reason for each is in {Path(cfg.out) / where}")
