"""pipeline.shard: shard format (tar, webdataset, DALI), accounting of broken inputs, resume after kill -9,
determinism, parts + merge, the extracted layout, and one-line CLI errors."""
from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from pipeline.common.cli import run_cli
from pipeline.shard import cli, listing, sharder as shard, work as shardwork
from tests.mediafiles import CRASH_LABEL, crashing_work, kill_when, remux, tree_bytes

REPO = Path(__file__).resolve().parents[1]
JSON_FIELDS = {"id", "ytid", "start", "label", "class_index", "split", "fps", "width", "height", "sample_rate",
               "channels", "duration", "num_samples", "quality"}
FIGURES = {"rms_dbfs", "window_rms_dbfs", "silent_fraction", "clipped_fraction", "channels", "motion", "mean_motion",
           "sampled_frames", "frames_counted", "video_seconds", "real_fps", "image_hash", "audio_hash"}


def _settings(shard_dir: Path) -> dict:
    """The content settings `shard_dir` was made with (everything but out, workers and parts)."""
    return json.loads((shard_dir / shard.STATE_DIR / "plan.json").read_text())["settings"]


def _train_rows(corpus: Path) -> list[list[str]]:
    with open(corpus / "vggsound.csv", newline="") as fh:
        return [r for r in csv.reader(fh) if r[3] == "train"]


def _cid(row: list[str]) -> str:
    return f"{row[0]}_{int(row[1]):06d}"


def test_tar_lists_members_and_manifest_adds_up(shard_dir: Path):
    m = json.loads((shard_dir / "manifest.json").read_text())
    c = m["counts"]
    assert c["written"] + c["failed"] + c["missing"] + c["excluded"] == c["listed"] and c["written"] > 0
    assert c["excluded"] == 0 and (shard_dir / "excluded.jsonl").read_text() == ""
    assert sum(s["count"] for s in m["shards"]) == c["written"]
    assert m["splits"]["val"]["count"] > 0 and m["splits"]["train"]["count"] > 0
    assert (m["sample_rate"], m["audio_format"], m["frame_size"]) == (16000, "wav", 256)
    for s in m["shards"]:
        tar = shard_dir / f"{s['name']}.tar"
        assert tar.stat().st_size == s["bytes"]
        names = subprocess.run(["tar", "-tf", str(tar)], check=True, capture_output=True, text=True).stdout.split()
        keys = {n.split(".", 1)[0] for n in names}
        assert len(keys) == s["count"]
        assert sorted(names) == sorted(f"{k}.{e}" for k in keys for e in ("jpg", "wav", "json", "cls"))
        first = (shard_dir / f"{s['name']}.idx").read_text().split("\n")[0]
        assert first == f"v1.2 {s['count']}"


def test_webdataset_reads_every_sample(shard_dir: Path):
    import webdataset as wds

    m = json.loads((shard_dir / "manifest.json").read_text())
    urls = [str(shard_dir / f"{s['name']}.tar") for s in m["shards"]]
    seen = set()
    for sample in wds.WebDataset(urls, shardshuffle=False):
        meta = json.loads(sample["json"])
        assert set(meta) == JSON_FIELDS and meta["id"] == sample["__key__"] and set(meta["quality"]) == FIGURES
        assert meta["label"] == m["classes"][meta["class_index"]] and sample["cls"] == str(meta["class_index"]).encode()
        with Image.open(io.BytesIO(sample["jpg"])) as im:
            assert min(im.size) == 256 and im.mode == "RGB"
        audio, rate = sf.read(io.BytesIO(sample["wav"]), dtype="int16")
        assert rate == 16000 and audio.ndim == 1 and audio.shape[0] == meta["num_samples"]
        seen.add(meta["id"])
    assert len(seen) == m["counts"]["written"]


def test_dali_reads_every_sample_with_the_indexes(shard_dir: Path):
    from nvidia.dali import fn, pipeline_def, types

    m = json.loads((shard_dir / "manifest.json").read_text())
    tars = [str(shard_dir / f"{s['name']}.tar") for s in m["shards"]]

    @pipeline_def(batch_size=4, num_threads=1, device_id=None)
    def pipe():
        jpg, wav, meta = fn.readers.webdataset(paths=tars, index_paths=[t[:-4] + ".idx" for t in tars],
                                               ext=["jpg", "wav", "json"], missing_component_behavior="error",
                                               pad_last_batch=True, name="r")
        audio, rate = fn.decoders.audio(wav, dtype=types.INT16)
        return fn.decoders.image(jpg, device="cpu"), audio, rate, meta

    p = pipe()
    p.build()
    total = p.reader_meta("r")["epoch_size"]
    assert total == m["counts"]["written"]
    got = {}
    while len(got) < total:
        images, audio, rates, metas = p.run()
        for i in range(len(images)):
            meta = json.loads(bytes(np.asarray(metas.at(i))).decode())
            assert min(np.asarray(images.at(i)).shape[:2]) == 256
            assert float(np.asarray(rates.at(i))) == 16000.0
            assert np.asarray(audio.at(i)).shape[0] == meta["num_samples"]
            got[meta["id"]] = True
    assert len(got) == total


def test_broken_inputs_are_accounted_for(synth_corpus: Path, tmp_path: Path):
    rows = _train_rows(synth_corpus)[:8]
    ids = [_cid(r) for r in rows]
    src = tmp_path / "src"
    (src / "video").mkdir(parents=True)
    good = synth_corpus / "video" / f"{ids[0]}.mp4"
    for cid in ids[:3]:
        (src / "video" / f"{cid}.mp4").symlink_to(synth_corpus / "video" / f"{cid}.mp4")
    (src / "video" / f"{ids[3]}.mp4").write_bytes(good.read_bytes()[:3000])                  # truncated
    (src / "video" / f"{ids[4]}.mp4").write_bytes(np.random.default_rng(1).bytes(5000))       # garbage
    remux(good, src / "video" / f"{ids[5]}.mp4", audio=False)                                 # no audio stream
    remux(good, src / "video" / f"{ids[6]}.mp4", seconds=1.0)                                 # 1 s long
    with open(src / "vggsound.csv", "w", newline="") as fh:                                   # ids[7]: no file
        csv.writer(fh).writerows(rows)
    (tmp_path / "list.txt").write_text("\n".join(ids + ["notInTheCsv_000001"]) + "\n")
    cfg = shard.ShardConfig(src=str(src), out=str(tmp_path / "out"), list=str(tmp_path / "list.txt"),
                            val_fraction=0.0, shard_size=4, min_duration=1.5, workers=2)
    summary = shard.run(cfg, progress=False)
    assert summary.manifest["counts"] == {"listed": 9, "written": 3, "failed": 4, "missing": 2, "excluded": 0}
    failures = [json.loads(line) for line in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    assert {f["id"]: f["reason"] for f in failures} == {
        ids[3]: "corrupt", ids[4]: "unreadable", ids[5]: "no_audio", ids[6]: "too_short", ids[7]: "missing",
        "notInTheCsv_000001": "missing"}
    assert all(f["path"] and f["detail"] for f in failures)
    written = {n.split(".")[0] for t in (tmp_path / "out").glob("*.tar") for n in tarfile.open(t).getnames()}
    assert written == set(ids[:3])


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.shard", *args]


def test_resume_after_kill_equals_an_uninterrupted_run(synth_corpus: Path, tmp_path: Path):
    """SIGKILL twice at different moments, re-run, and compare every byte with an uninterrupted run."""
    args = ["--src", str(synth_corpus), "--shard-size", "1", "--frames", "5", "--min-duration", "1.5",
            "--val-fraction", "0.2", "--no-progress"]
    reference = tmp_path / "reference"
    shard.run(cli.config_from_args(cli._parser().parse_args(args + ["--out", str(reference), "--workers", "2"])),
              progress=False)
    out = tmp_path / "killed"
    state = out / shard.STATE_DIR
    for wait_for in (1, 6):  # finished shards at which to kill: the first run, then the resumed run
        kill_when(_cli(*args, "--out", str(out), "--workers", "1"), REPO, state, wait_for)
        assert not (out / "manifest.json").exists(), "the run finished before it could be killed"
        for tar in out.glob("*.tar"):  # a tar under its final name is always complete
            with tarfile.open(tar) as tf:
                assert tf.getnames()
    done_before = {p.name: p.stat().st_mtime_ns for p in state.glob("*-*.json")}
    subprocess.run(_cli(*args, "--out", str(out), "--workers", "2"), cwd=REPO, check=True,
                   capture_output=True)
    assert tree_bytes(out) == tree_bytes(reference)
    assert not list(out.glob(".*.tmp")) and not list(state.glob(".*.tmp"))
    for name, mtime in done_before.items():  # finished shards were not rewritten
        assert (state / name).stat().st_mtime_ns == mtime


def test_seed_changes_the_order_not_the_content(shard_dir: Path):
    settings = _settings(shard_dir)
    plan0 = shard.build_plan(shard.ShardConfig(**settings))
    plan1 = shard.build_plan(shard.ShardConfig(**{**settings, "seed": settings["seed"] + 1}))
    order = lambda plan: [c[0] for s in plan["shards"] for c in s["clips"]]  # noqa: E731
    assert order(plan0) != order(plan1) and sorted(order(plan0)) == sorted(order(plan1))
    assert order(plan0) == [c[0] for s in json.loads((shard_dir / ".state" / "plan.json").read_text())["shards"]
                            for c in s["clips"]]


def test_parts_then_merge_equal_a_single_run(tmp_path: Path, shard_dir: Path, capsys):
    out = tmp_path / "parts"
    base = ["--out", str(out), "--no-progress", "--num-parts", "3", "--workers", "1"] + [
        f"{k}={v}" for k, v in _settings(shard_dir).items()]
    assert run_cli(cli.main, base + ["--part", "2"]) == 0
    assert run_cli(cli.main, ["merge", "--out", str(out)]) == 2
    assert "shards are not finished" in capsys.readouterr().err
    assert run_cli(cli.main, base + ["--part", "0"]) == 0
    assert run_cli(cli.main, base + ["--part", "1"]) == 0
    assert not (out / "manifest.json").exists()
    assert run_cli(cli.main, ["merge", "--out", str(out)]) == 0
    assert tree_bytes(out) == tree_bytes(shard_dir)


def test_extracted_layout(synth_corpus: Path, tmp_path: Path):
    vggss = synth_corpus / "testsets" / "vggss"
    test_ids = sorted(p.stem for p in (vggss / "frames").glob("*.jpg"))
    # one clip as a folder of numbered frames: the centre of 1, 2, 10 is 2.jpg
    src = tmp_path / "src"
    shutil.copytree(vggss / "audio", src / "audio")
    (src / "frames" / test_ids[0]).mkdir(parents=True)
    for name, colour in (("1", (255, 0, 0)), ("2", (0, 255, 0)), ("10", (0, 0, 255))):
        Image.new("RGB", (96, 64), colour).save(src / "frames" / test_ids[0] / f"{name}.jpg", quality=95)
    for cid in test_ids[1:]:
        shutil.copy(vggss / "frames" / f"{cid}.jpg", src / "frames" / f"{cid}.jpg")
    out = tmp_path / "out"
    assert run_cli(cli.main, ["--src", str(src), "--csv", str(synth_corpus / "vggsound.csv"), "--split", "test",
                       "--out", str(out), "--frame-size", "32", "--min-duration", "1.5", "--workers", "1",
                       "--audio-format", "flac", "--no-progress"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["counts"] == {"listed": len(test_ids), "written": len(test_ids), "failed": 0, "missing": 0,
                           "excluded": 0}
    assert list(m["splits"]) == ["test"]
    with tarfile.open(out / "test-000000.tar") as tf:
        jpg = tf.extractfile(f"{test_ids[0]}.jpg").read()
        meta = json.loads(tf.extractfile(f"{test_ids[0]}.json").read())
        audio, rate = sf.read(io.BytesIO(tf.extractfile(f"{test_ids[0]}.flac").read()), dtype="int16")
    assert rate == 16000 and audio.shape == (meta["num_samples"],) and m["audio_format"] == "flac"
    with Image.open(io.BytesIO(jpg)) as im:
        assert im.size == (48, 32)
        r, g, b = im.convert("RGB").getpixel((24, 16))
        assert g > 200 and r < 60 and b < 60
    assert (meta["width"], meta["height"], meta["fps"], meta["split"]) == (96, 64, None, "test")


def test_cli_errors_are_one_line(synth_corpus: Path, tmp_path: Path, capsys):
    def err(argv: list[str]) -> str:
        try:
            assert run_cli(cli.main, argv) == 2
        except SystemExit as exc:
            assert exc.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), lines
        return lines[0]

    assert "does not exist" in err(["--src", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert "invalid int value" in err(["--shard-size", "x"])
    assert "val_fraction" in err(["--src", str(synth_corpus), "--out", str(tmp_path / "o"), "--val-fraction", "2"])
    bad = tmp_path / "bad"
    (bad / "video").mkdir(parents=True)
    (bad / "vggsound.csv").write_text("abcdefghijk,10,dog,train\nabc.efghijk,10,dog,train\n")
    assert f"{bad / 'vggsound.csv'}:2:" in err(["--src", str(bad), "--out", str(tmp_path / "o")])
    assert not (tmp_path / "o").exists()
    assert "no sharding plan" in err(["merge", "--out", str(tmp_path / "o")])
    assert "not a shard folder" in err(["--src", str(synth_corpus), "--out", str(synth_corpus)])
    (bad / "vggsound.csv").write_text("abcdefghijk,10,dog,train\n")
    assert "no clip could be sharded" in err(["--src", str(bad), "--out", str(tmp_path / "o"), "--no-progress",
                                              "--val-fraction", "0"])    # its one clip is missing
    assert "other settings ['seed']" in err(["--src", str(bad), "--out", str(tmp_path / "o"), "--seed", "3",
                                             "--val-fraction", "0"])


def test_a_worker_that_dies_costs_one_clip(synth_corpus: Path):
    ids = [_cid(r) for r in _train_rows(synth_corpus)[:5]]
    clips = [[cid, cid[:11], 0, CRASH_LABEL if k == 1 else "ok", 0, "train"] for k, cid in enumerate(ids)]
    opts = shardwork.ClipOptions(frames=1, min_duration=1.5, frame_size=32, audio_format="flac", jpeg_quality=90)
    layout = listing.Layout("video", synth_corpus / "video", synth_corpus / "frames", synth_corpus / "audio")
    with shardwork.ClipPool(opts, layout, 2, work=crashing_work) as pool:
        results = list(pool.map(clips))
    assert [r[0] for r in results] == ids
    assert results[1][2]["reason"] == "corrupt" and "crashed" in results[1][2]["detail"]
    assert all(r[1] is not None for k, r in enumerate(results) if k != 1)


def test_split_all_plans_train_val_test_without_overlap(shard_dir: Path, synth_corpus: Path):
    plan = shard.build_plan(shard.ShardConfig(**{**_settings(shard_dir), "split": "all"}))
    by_split = {g: {c[0] for s in plan["shards"] if s["split"] == g for c in s["clips"]} for g in plan["splits"]}
    with open(synth_corpus / "vggsound.csv", newline="") as fh:
        csv_split = {_cid(r): r[3] for r in csv.reader(fh)}
    assert list(by_split) == ["train", "val", "test"]
    assert by_split["test"] == {c for c, s in csv_split.items() if s == "test"}
    assert by_split["train"] | by_split["val"] == {c for c, s in csv_split.items() if s == "train"}
    assert not by_split["train"] & by_split["val"]
    assert all(c[5] == s["split"] for s in plan["shards"] for c in s["clips"])
