"""Issue 17 end to end: a synthetic corpus with planted muted, static, clipped and duplicate clips, sharded with the
quality figures. Flags against what the generator planted (and, for stillness, whether its picture changes at all);
`--exclude` accounting; resume after kill -9 with `--exclude` on; parts sharing the duplicate scan; the report."""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from PIL import Image

from pipeline.common.cli import run_cli
from pipeline.quality import report
from pipeline.shard import cli, sharder
from pipeline.synth.corpus import SynthConfig, generate
from tests.mediafiles import kill_when, tree_bytes

REPO = Path(__file__).resolve().parents[1]
DEFECT_FIXTURE = dict(clips=36, seconds=3.0, classes=4, seed=5, test_fraction=0.1, offscreen_fraction=0.1,
                      is3_images=0, s4_videos=0, clean_per_class=0, defects=2, workers=2)
SHARD = dict(shard_size=6, val_fraction=0.0, min_duration=1.5, split="all")
EVERYTHING = "muted,static,clipped,duplicates"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return generate(SynthConfig(out=str(tmp_path_factory.mktemp("defects") / "vggsound"), **DEFECT_FIXTURE),
                    progress=False)


def _shard(corpus: Path, out: Path, **extra) -> sharder.RunSummary:
    return sharder.run(sharder.ShardConfig(src=str(corpus), out=str(out), workers=2, **{**SHARD, **extra}),
                       progress=False)


@pytest.fixture(scope="module")
def screened(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("screened") / "shards"
    _shard(corpus, out)
    return out


@pytest.fixture(scope="module")
def excluded(corpus, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("excluded") / "shards"
    _shard(corpus, out, exclude=EVERYTHING)
    return out


def _meta(corpus: Path) -> dict[str, dict]:
    return {c["id"]: c for c in json.loads((corpus / "synth.json").read_text())["clips"]}


def truth(corpus: Path) -> dict[str, list[str]]:
    """The flags each clip must raise, from the generator's record: its planted defect, `static` for every clip whose
    picture does not change (planted or not), and `duplicates` for the larger id of each planted pair."""
    want: dict[str, list[str]] = {}
    for cid, c in _meta(corpus).items():
        flags = [f for f in ("muted",) if c.get("defect") == "muted"]
        flags += ["static"] if not c["moving"] else []
        flags += ["clipped"] if c.get("defect") == "clipped" else []
        if c.get("defect") == "duplicate" and cid > c["duplicate_of"]:
            flags.append("duplicates")
        if any(o.get("duplicate_of") == cid and cid > o["id"] for o in _meta(corpus).values()):
            flags.append("duplicates")
        want[cid] = flags
    return want


def _lines(shards: Path) -> list[dict]:
    return [json.loads(x) for x in (shards / "quality.jsonl").read_text().splitlines()]


def _members(shards: Path) -> dict[str, bytes]:
    out = {}
    for tar in sorted(shards.glob("*.tar")):
        with tarfile.open(tar) as tf:
            out.update({m.name: tf.extractfile(m).read() for m in tf.getmembers()})
    return out


def test_planted_clips_are_flagged_and_clean_clips_are_not(corpus: Path, screened: Path):
    want, meta = truth(corpus), _meta(corpus)
    got = {q["id"]: q["flags"] for q in _lines(screened)}
    assert got == want
    planted = [c["defect"] for c in meta.values() if c.get("defect")]
    assert sorted(planted) == sorted(["muted", "static", "clipped", "duplicate"] * 2)
    assert sum(1 for f in want.values() if not f) >= 24                 # most clips are clean and stay unflagged
    m = json.loads((screened / "manifest.json").read_text())
    pairs = sorted(sorted([cid, c["duplicate_of"]]) for cid, c in meta.items() if c.get("defect") == "duplicate")
    assert m["quality"]["duplicate_clusters"] == pairs
    for name in ("muted", "static", "clipped", "duplicates"):
        assert m["quality"]["flagged"][name] == {"written": sum(name in f for f in want.values()), "excluded": 0}
    assert m["counts"]["excluded"] == 0 and m["counts"]["written"] == len(meta)


def test_figures_match_what_was_generated(corpus: Path, screened: Path):
    meta = _meta(corpus)
    for q in _lines(screened):
        c, f = meta[q["id"]], q["figures"]
        assert f["frames_counted"] == round(c["fps"] * c["duration"]) and f["real_fps"] == c["fps"]
        assert f["video_seconds"] == c["duration"] and f["sampled_frames"] >= 2
        if c.get("defect") == "muted":
            assert f["silent_fraction"] == 1.0 and f["rms_dbfs"] <= -80
        else:
            assert f["silent_fraction"] < 0.6 and -25 < f["rms_dbfs"] < 0
        # a stereo clip's channels carry independent noise; muted stereo clips are all zeros or hiss
        if c["channels"] == 1:
            assert f["channels"] == "mono"
        elif c.get("defect") != "muted":
            assert f["channels"] == "distinct"
        assert (f["clipped_fraction"] >= 0.01) == (c.get("defect") == "clipped")
        assert q["label"] == c["label"] and q["split"] == c["split"]


def test_exclude_leaves_the_flagged_clips_out_and_accounts_for_each(corpus: Path, screened: Path, excluded: Path):
    want = truth(corpus)
    flagged = {cid: f for cid, f in want.items() if f}
    m = json.loads((excluded / "manifest.json").read_text())
    c = m["counts"]
    assert c == {"listed": len(want), "written": len(want) - len(flagged), "failed": 0, "missing": 0,
                 "excluded": len(flagged)}
    lines = [json.loads(x) for x in (excluded / "excluded.jsonl").read_text().splitlines()]
    assert {e["id"]: e["reasons"] for e in lines} == flagged
    meta = _meta(corpus)
    for e in lines:
        assert set(e["figures"]) >= {"rms_dbfs", "motion", "image_hash"} and Path(e["path"]).name == f"{e['id']}.mp4"
        if "duplicates" in e["reasons"]:
            assert e["duplicate_of"] < e["id"] and sorted([e["id"], e["duplicate_of"]]) in m["quality"][
                "duplicate_clusters"]
            assert meta[e["id"]].get("duplicate_of") == e["duplicate_of"] or \
                meta[e["duplicate_of"]].get("duplicate_of") == e["id"]
    # the tars hold every other clip, each member byte-identical to the run that excluded nothing
    kept, every = _members(excluded), _members(screened)
    assert {n.split(".", 1)[0] for n in kept} == set(want) - set(flagged)
    assert kept == {n: b for n, b in every.items() if n.split(".", 1)[0] not in flagged}
    statuses = {q["id"]: (q["status"], q["excluded_for"]) for q in _lines(excluded)}
    assert statuses == {cid: (("excluded", f) if f else ("written", [])) for cid, f in want.items()}
    assert m["quality"]["flagged"]["static"]["excluded"] == sum("static" in f for f in flagged.values())


def test_without_the_figures_only_the_json_differs(corpus: Path, screened: Path, tmp_path: Path):
    """`quality=false` (the sharder before issue 17): the same members but the JSON's `quality`, and no figures in the
    manifest."""
    out = tmp_path / "plain"
    _shard(corpus, out, quality=False)
    plain, figured = _members(out), _members(screened)
    assert plain.keys() == figured.keys()
    for name, data in figured.items():
        if name.endswith(".json"):
            meta = json.loads(data)
            assert "quality" in meta and json.loads(plain[name]) == {k: v for k, v in meta.items() if k != "quality"}
        else:
            assert plain[name] == data
    m = json.loads((out / "manifest.json").read_text())
    assert m["quality"] is None and (out / "quality.jsonl").read_text() == ""


def test_resume_after_kill_with_exclude_is_byte_identical(corpus: Path, excluded: Path, tmp_path: Path):
    """SIGKILL during the duplicate scan and again while writing shards, then finish: the same bytes as `excluded`."""
    out = tmp_path / "killed"
    state = out / sharder.STATE_DIR
    args = [sys.executable, "-m", "pipeline.shard", "--src", str(corpus), "--out", str(out), "--no-progress",
            "--exclude", EVERYTHING, "--workers", "1"] + [f"{k}={v}" for k, v in SHARD.items()]
    for where, count in ((state / sharder.SCAN_DIR, 1), (state, 2)):
        kill_when(args, REPO, where, count)
        assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
    assert list((state / sharder.SCAN_DIR).glob("*-*.json")) and list(state.glob("*-*.json"))
    subprocess.run([a if a != "1" else "2" for a in args], cwd=REPO, check=True, capture_output=True)  # 2 workers
    assert tree_bytes(out) == tree_bytes(excluded)


def test_parts_share_the_duplicate_scan(corpus: Path, excluded: Path, tmp_path: Path):
    out = tmp_path / "parts"
    base = ["--src", str(corpus), "--out", str(out), "--no-progress", "--exclude", EVERYTHING, "--workers", "1",
            "--num-parts", "2"] + [f"{k}={v}" for k, v in SHARD.items()]
    assert run_cli(cli.main, base + ["--part", "1"]) == 0           # a lone part scans every shard
    scans = {p.name: p.stat().st_mtime_ns for p in (out / sharder.STATE_DIR / sharder.SCAN_DIR).glob("*.json")}
    assert len(scans) == len(json.loads((out / sharder.STATE_DIR / sharder.PLAN_FILE).read_text())["shards"]) == 7
    assert run_cli(cli.main, base + ["--part", "0"]) == 0
    assert {p.name: p.stat().st_mtime_ns for p in (out / sharder.STATE_DIR / sharder.SCAN_DIR).glob("*.json")} \
        == scans                                                   # the second part reused them
    assert run_cli(cli.main, ["merge", "--out", str(out)]) == 0
    assert tree_bytes(out) == tree_bytes(excluded)


def test_quality_report(corpus: Path, excluded: Path, tmp_path: Path, capsys):
    want = truth(corpus)
    flagged = {cid for cid, f in want.items() if f}
    out = tmp_path / "report"
    assert run_cli(report.main, [str(excluded / "manifest.json"), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(report.FILES)
    text = (out / "report.md").read_text()
    assert f"Listed {len(want)}: written {len(want) - len(flagged)}, failed 0, missing 0, excluded {len(flagged)}" \
        in text
    for name in ("muted", "static", "clipped", "duplicates"):
        n = sum(name in f for f in want.values())
        assert f"| {n} | {n / len(want):.1%} |" in text.split(f"| {name} |", 1)[1].split("\n", 1)[0] + " |"
    rows = list(csv.reader(io.StringIO((out / "flagged.csv").read_text())))
    assert {r[0]: r[3].split() for r in rows[1:]} == {c: want[c] for c in flagged}
    dup_rows = list(csv.reader(io.StringIO((out / "duplicates.csv").read_text())))[1:]
    assert len(dup_rows) == 4 and [r[2] for r in dup_rows] == ["1", "0", "1", "0"]
    for png in ("loudness.png", "silence.png", "motion.png", "duration.png"):
        with Image.open(out / png) as im:
            assert im.size[0] > 100
    s = json.loads((out / "quality.json").read_text())
    assert sum(r["decoded"] for r in s["per_class"]) == len(want)
    assert sum(r["excluded"] for r in s["per_class"]) == len(flagged)
    assert f"{len(want)} clips: 2 muted" in capsys.readouterr().out


def test_quality_report_errors(screened: Path, tmp_path: Path, capsys, corpus: Path):
    assert run_cli(report.main, [str(tmp_path / "nowhere"), "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'nowhere' / 'manifest.json'}: no manifest")
    plain = tmp_path / "plain"
    _shard(corpus, plain, quality=False, shard_size=100)
    assert run_cli(report.main, [str(plain), "--out", str(tmp_path / "r")]) == 2
    assert "sharded without quality figures" in capsys.readouterr().err
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert run_cli(report.main, [str(screened), "--out", str(foreign)]) == 2
    assert (foreign / "notes.txt").read_text() == "mine" and capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("args,message", [
    (["--exclude", "muted,blurry"], "error: exclude: unknown blurry (choose from muted, static, clipped, duplicates)"),
    (["--exclude", "muted", "--no-quality"], "error: exclude needs the quality figures (quality=true)"),
    (["--static-motion", "-1"], "error: static_motion must be >= 0, got -1.0"),
    (["--duplicate-image-bits", "64"], "error: duplicate_image_bits must be in [0, 63], got 64"),
])
def test_cli_errors_are_one_line(corpus: Path, tmp_path: Path, capsys, args, message):
    out = tmp_path / "out"
    assert run_cli(cli.main, ["--src", str(corpus), "--out", str(out), "--no-progress", *args]) == 2
    assert capsys.readouterr().err == message + "\n" and not out.exists()


def test_a_damaged_scan_record_is_scanned_again(corpus: Path, excluded: Path, tmp_path: Path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(excluded, out)
    scan = out / sharder.STATE_DIR / sharder.SCAN_DIR / "train-000000.json"
    scan.write_text('{"figures": {"x": {}}}')                      # valid JSON, not a scan record
    (out / sharder.STATE_DIR / "train-000001.json").unlink()        # a shard left to write: the scan runs
    (out / "manifest.json").unlink()
    _shard(corpus, out, exclude=EVERYTHING)
    assert f"warning: {scan}: not a scan record; scanning that shard again" in capsys.readouterr().err
    assert tree_bytes(out) == tree_bytes(excluded)
