"""The synthetic corpus (`python -m pipeline.synth`): mp4/csv formats, ground truth, test-set formats, determinism,
resume and user errors."""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from PIL import Image

from pipeline.common.cli import run_cli
from pipeline.synth.cli import main
from pipeline.synth.corpus import SynthConfig, SynthError, generate, settings
from pipeline.synth.plan import FRAME_RATES, RESOLUTIONS, SAMPLE_RATES, SENTINEL
from tests.conftest import SYNTH_FIXTURE

ID_RE = re.compile(r"^[A-Za-z0-9_-]{11}$")


def _meta(root: Path) -> dict:
    return json.loads((root / "synth.json").read_text())


def _rows(root: Path) -> list[list[str]]:
    with open(root / "vggsound.csv", newline="") as fh:
        return list(csv.reader(fh))


def _class_pixels(rgb: np.ndarray, hue: float) -> np.ndarray:
    """Pixels of a saturated colour of the given hue (the classes' colours; backgrounds are desaturated)."""
    f = rgb.astype(np.float32)
    mx, mn = f.max(-1), f.min(-1)
    sat = (mx - mn) / np.maximum(mx, 1)
    h = np.degrees(np.arctan2(np.sqrt(3) * (f[..., 1] - f[..., 2]), 2 * f[..., 0] - f[..., 1] - f[..., 2])) % 360
    dh = np.minimum(np.abs(h - hue), 360 - np.abs(h - hue))
    return (sat > 0.5) & (dh < 12) & (mx > 100)


def _centre_frame(path: Path, t: float) -> np.ndarray:
    with av.open(str(path)) as f:
        for frame in f.decode(video=0):
            if frame.time >= t - 1e-6:
                return frame.to_ndarray(format="rgb24")
    raise AssertionError(f"{path}: no frame at {t}")


def test_csv_rows_ids_labels_and_files(synth_corpus):
    rows = _rows(synth_corpus)
    text = (synth_corpus / "vggsound.csv").read_text()
    assert len(rows) == SYNTH_FIXTURE["clips"] and all(len(r) == 4 for r in rows)
    assert not text.startswith("ytid")  # no header
    assert '"female speech, woman speaking"' in text  # labels with commas are quoted
    assert any(r[0].startswith("-") for r in rows) and all(ID_RE.match(r[0]) for r in rows)
    ids = [f"{r[0]}_{int(r[1]):06d}" for r in rows]
    assert len(set(ids)) == len(ids)
    assert {r[3] for r in rows} == {"train", "test"}
    assert len({r[2] for r in rows}) == SYNTH_FIXTURE["classes"]
    for i in ids:
        assert (synth_corpus / "video" / f"{i}.mp4").is_file()
    assert [c["id"] for c in _meta(synth_corpus)["clips"]] == ids
    assert not list(synth_corpus.rglob("*.tmp"))


def test_mp4_streams_durations_and_varied_formats(synth_corpus):
    seen = {"size": set(), "fps": set(), "sr": set(), "ch": set()}
    for clip in _meta(synth_corpus)["clips"]:
        with av.open(str(synth_corpus / "video" / f"{clip['id']}.mp4")) as f:
            v, a = f.streams.video[0], f.streams.audio[0]
            assert v.codec_context.name == "h264" and a.codec_context.name == "aac"
            assert (v.width, v.height) == (clip["width"], clip["height"])
            assert float(v.average_rate) == clip["fps"] and a.sample_rate == clip["sample_rate"]
            assert a.channels == clip["channels"]
            assert abs(f.duration / 1e6 - SYNTH_FIXTURE["seconds"]) < 0.1
            assert v.frames == round(SYNTH_FIXTURE["seconds"] * clip["fps"])
        seen["size"].add((v.width, v.height))
        seen["fps"].add(clip["fps"])
        seen["sr"].add(clip["sample_rate"])
        seen["ch"].add(clip["channels"])
    assert seen == {"size": set(RESOLUTIONS), "fps": set(FRAME_RATES), "sr": set(SAMPLE_RATES), "ch": {1, 2}}


def test_sounding_object_is_where_its_colour_is_in_the_centre_frame(synth_corpus):
    meta = _meta(synth_corpus)
    hues = {c["label"]: c["hue"] for c in meta["classes"]}
    assert any(c["offscreen"] for c in meta["clips"]) and any(len(c["boxes"]) > 1 for c in meta["clips"])
    for clip in meta["clips"]:
        rgb = _centre_frame(synth_corpus / "video" / f"{clip['id']}.mp4", clip["duration"] / 2)
        h, w = rgb.shape[:2]
        pix = _class_pixels(rgb, hues[clip["label"]])
        if clip["offscreen"]:
            assert clip["box"] is None and pix.mean() < 0.002, clip["id"]
            continue
        inside = np.zeros_like(pix)
        for x1, y1, x2, y2 in clip["boxes"]:
            bx = (int(round(x1 * w)), int(round(y1 * h)), int(round(x2 * w)), int(round(y2 * h)))
            inside[max(bx[1] - 3, 0):bx[3] + 3, max(bx[0] - 3, 0):bx[2] + 3] = True
            assert pix[bx[1]:bx[3], bx[0]:bx[2]].mean() > 0.3, clip["id"]  # the box is filled with the colour
        assert (pix & inside).sum() / pix.sum() > 0.97, clip["id"]  # and the colour is in the box
        for d in clip["distractors"]:
            assert d["label"] != clip["label"]


def test_each_class_sounds_at_its_own_pitch(synth_corpus):
    meta = _meta(synth_corpus)
    f0 = {c["label"]: c["sound"]["f0"] for c in meta["classes"]}
    assert len(set(f0.values())) == len(f0)
    for rec in json.loads((synth_corpus / "testsets/vggss/vggss.json").read_text()):
        x, sr = sf.read(synth_corpus / "testsets/vggss/audio" / f"{rec['file']}.wav")
        spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
        peak = np.argmax(spec) * sr / len(x)
        assert 0.9 < peak / f0[rec["class"]] < 1.35, rec["file"]  # pitch jitter +-4 %, chirps glide up to +25 %


def test_vggss_testset_format(synth_corpus):
    d = synth_corpus / "testsets/vggss"
    recs = json.loads((d / "vggss.json").read_text())
    meta = {c["id"]: c for c in _meta(synth_corpus)["clips"]}
    test_ids = [f"{r[0]}_{int(r[1]):06d}" for r in _rows(synth_corpus) if r[3] == "test"]
    assert [r["file"] for r in recs] == test_ids
    degenerate = sentinel = 0
    for r in recs:
        assert set(r) == {"file", "class", "bbox", "visible"} and r["class"] == meta[r["file"]]["label"]
        # every object in the frame, from the generator's own record: the sounding one and each distractor
        drawn = {r["class"]} | {d["label"] for d in meta[r["file"]]["distractors"]}
        assert r["visible"] == sorted(drawn)
        assert (synth_corpus / "video" / f"{r['file']}.mp4").is_file()
        with Image.open(d / "frames" / f"{r['file']}.jpg") as im:
            assert im.format == "JPEG" and im.size == (meta[r["file"]]["width"], meta[r["file"]]["height"])
        info = sf.info(d / "audio" / f"{r['file']}.wav")
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, 16000 * SYNTH_FIXTURE["seconds"])
        valid = [b for b in r["bbox"] if b[2] > b[0] and b[3] > b[1] and min(b) >= 0]
        assert valid == meta[r["file"]]["boxes"] and len(valid) >= 1
        degenerate += any(b[2] == b[0] and SENTINEL not in b for b in r["bbox"])
        sentinel += any(SENTINEL in b for b in r["bbox"])
        # clipped to [0, 1] like the readers do, the corrupt boxes add no pixels to the ground truth
        gt = np.zeros((224, 224), np.uint8)
        for b in r["bbox"]:
            x1, y1, x2, y2 = (np.clip(np.array(b), 0, 1) * 224).astype(int)
            gt[y1:y2, x1:x2] = 1
        assert gt.sum() > 0
    assert degenerate == 1 and sentinel == 1
    classes = json.loads((d / "class_files_dict.json").read_text())
    assert sorted(f for fs in classes.values() for f in fs) == sorted(test_ids)


def test_train_and_test_splits_share_no_clip(synth_corpus):
    rows = _rows(synth_corpus)
    train = {f"{r[0]}_{int(r[1]):06d}" for r in rows if r[3] == "train"}
    test = {f"{r[0]}_{int(r[1]):06d}" for r in rows if r[3] == "test"}
    files = {r["file"] for r in json.loads((synth_corpus / "testsets/vggss/vggss.json").read_text())}
    assert train and test and not train & test and files == test
    assert not any(c["offscreen"] for c in _meta(synth_corpus)["clips"] if c["split"] == "test")


def test_is3_testset_format(synth_corpus):
    d = synth_corpus / "testsets/is3"
    ann = json.loads((d / "IS3_annotation.json").read_text())
    bbox = json.loads((d / "synthetic3240_bbox.json").read_text())
    seg = json.loads((d / "synthetic3240_seg.json").read_text())
    assert len(ann) == len(bbox) == len(seg) == 2 * SYNTH_FIXTURE["is3_images"]
    groups: dict[str, set[str]] = {}
    for a, b, s in zip(ann, bbox, seg):
        stem = Path(a["image"]).stem
        cls_a, cls_b, num, target = stem.split("_")  # class names carry no underscore
        assert num.isdigit() and cls_a != cls_b and target in (cls_a, cls_b)
        groups.setdefault(f"{cls_a}_{cls_b}_{num}", set()).add(target)
        assert b == {"image": a["image"], "audio": a["audio"], "gt_box": a["gt_box"]}
        assert s["gt_box"] == a["gt_mask"] and s["offset"] == 1
        with Image.open(d / a["image"]) as im:
            assert im.format == "JPEG" and im.size == (224, 224)
        with Image.open(d / a["gt_mask"]) as im:
            mask = np.asarray(im.convert("L")) > 127
        ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
        x1, y1, x2, y2 = a["gt_box"]
        assert 0 <= x1 < x2 <= 224 and 0 <= y1 < y2 <= 224
        assert abs(xs[0] - x1) <= 2 and abs(xs[-1] + 1 - x2) <= 2 and abs(ys[0] - y1) <= 2 and abs(ys[-1] + 1 - y2) <= 2
        info = sf.info(d / a["audio"])
        assert (info.samplerate, info.channels) == (16000, 1)
    assert all(len(t) == 2 for t in groups.values())
    classes = json.loads((d / "class_files_dict.json").read_text())
    assert sum(len(v) for v in classes.values()) == len(ann)


def test_is3_clean_audio_and_class_mapping(synth_corpus):
    d = synth_corpus / "testsets/is3_clean_audio"
    mapping = json.loads((d / "class_mapping.json").read_text())
    labels = {c["label"]: c["is3_name"] for c in _meta(synth_corpus)["classes"]}
    assert mapping == labels
    for folder in mapping.values():
        wavs = sorted((d / folder).glob("*.wav"))
        assert len(wavs) == SYNTH_FIXTURE["clean_per_class"]
        info = sf.info(wavs[0])
        assert (info.samplerate, info.channels) == (16000, 1)


def test_s4_testset_format(synth_corpus):
    d = synth_corpus / "testsets/s4"
    with open(d / "s4_meta_data.csv", newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["name", "start_time", "category", "split", "visible"]
    assert len(rows) == 1 + SYNTH_FIXTURE["s4_videos"]
    categories = {c["s4_category"] for c in _meta(synth_corpus)["classes"]}
    boxes = {b["image"]: b["gt_box"] for b in json.loads((d / "s4_box.json").read_text())}
    for name, _, cat, split, visible in rows[1:]:
        assert split == "test" and ID_RE.match(name) and " " not in cat
        seen = visible.split(";")
        assert cat in seen and seen == sorted(set(seen)) and set(seen) <= categories
        for k in range(1, 6):
            rel = f"visual_frames/test/{cat}/{name}/{name}_{k}.png"
            with Image.open(d / rel) as im:
                assert im.format == "PNG" and im.size == (224, 224)
            with Image.open(d / f"gt_masks/test/{cat}/{name}/{name}_{k}.png") as im:
                assert im.format == "PNG" and im.mode == "1"
                mask = np.asarray(im)
            ys, xs = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            assert boxes[rel] == [xs[0], ys[0], xs[-1] + 1, ys[-1] + 1]
        info = sf.info(d / f"audio_wav/test/{cat}/{name}.wav")
        assert (info.samplerate, info.channels, info.frames) == (16000, 1, 80000)


def test_evaluator_readers_accept_the_test_sets(synth_corpus):
    from eval.testsets import read_testset
    vggss = read_testset("vggss", synth_corpus / "testsets/vggss")
    assert len(vggss) == sum(r[3] == "test" for r in _rows(synth_corpus))
    assert all(vggss.gt(i).sum() > 0 for i in range(len(vggss)))
    assert len(read_testset("is3", synth_corpus / "testsets/is3")) == 2 * SYNTH_FIXTURE["is3_images"]
    assert len(read_testset("s4", synth_corpus / "testsets/s4")) == 5 * SYNTH_FIXTURE["s4_videos"]


TINY = dict(clips=4, seconds=1.0, classes=3, seed=3, test_fraction=0.5, is3_images=1, s4_videos=1, clean_per_class=1)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_gives_identical_bytes_whatever_the_workers(tmp_path):
    a = _tree(generate(SynthConfig(out=str(tmp_path / "a"), workers=1, **TINY), progress=False))
    b = _tree(generate(SynthConfig(out=str(tmp_path / "b"), workers=2, **TINY), progress=False))
    assert len(a) > 20 and a.keys() == b.keys()
    a.pop("config.yaml"), b.pop("config.yaml")  # names the output folder and worker count
    assert [k for k in a if a[k] != b[k]] == []
    c = _tree(generate(SynthConfig(out=str(tmp_path / "c"), workers=1, **{**TINY, "seed": 4}), progress=False))
    assert c["vggsound.csv"] != a["vggsound.csv"]


def test_rerun_resumes_and_skips_finished_files(tmp_path):
    out = generate(SynthConfig(out=str(tmp_path / "v"), workers=1, **TINY), progress=False)
    videos = sorted((out / "video").glob("*.mp4"))
    kept = {p: p.stat().st_mtime_ns for p in videos[1:]}
    original = videos[0].read_bytes()
    videos[0].unlink()
    (out / "vggsound.csv").unlink()
    meta = json.loads((out / "synth.json").read_text())
    assert meta["complete"]
    generate(SynthConfig(out=str(out), workers=1, **TINY), progress=False)
    assert videos[0].read_bytes() == original and (out / "vggsound.csv").is_file()
    assert {p: p.stat().st_mtime_ns for p in videos[1:]} == kept


def test_killed_run_resumes_to_the_same_bytes(tmp_path):
    args = ["--clips", "8", "--seconds", "2", "--classes", "3", "--seed", "5", "--workers", "1",
            "is3_images=1", "s4_videos=1", "clean_per_class=1"]
    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.synth", "--out", str(out), *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while proc.poll() is None and len(list(out.glob("video/*.mp4"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert not (out / "vggsound.csv").exists() and not json.loads((out / "synth.json").read_text())["complete"]
    assert run_cli(main, ["--out", str(out), *args]) == 0
    assert run_cli(main, ["--out", str(tmp_path / "whole"), *args]) == 0
    resumed, whole = _tree(out), _tree(tmp_path / "whole")
    resumed.pop("config.yaml"), whole.pop("config.yaml")
    assert resumed == whole


def test_user_errors_are_one_line_and_exit_2(tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("x")
    with pytest.raises(SynthError, match="holds no readable synth.json"):
        generate(SynthConfig(out=str(other), **TINY), progress=False)
    out = generate(SynthConfig(out=str(tmp_path / "v"), workers=1, **TINY), progress=False)
    assert run_cli(main, ["--out", str(out), "--clips", "5", "--seconds", "1", "--classes", "3", "--seed", "3",
                 "test_fraction=0.5", "is3_images=1", "s4_videos=1", "clean_per_class=1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "clips 4 (asked 5)" in err and err.count("\n") == 1
    assert run_cli(main, ["--out", str(tmp_path / "w"), "--classes", "1"]) == 2
    assert "--classes must be at least 2" in capsys.readouterr().err and not (tmp_path / "w").exists()
    assert run_cli(main, ["--out", str(tmp_path / "w"), "colour=red"]) == 2
    assert "unknown option" in capsys.readouterr().err
    assert run_cli(main, ["--out", str(other / "notes.txt" / "sub"), "--clips", "2"]) == 2
    assert capsys.readouterr().err == f"error: {other / 'notes.txt' / 'sub'}: Not a directory\n"


def test_defects_option(tmp_path, capsys):
    """Planting defects is refused when the corpus has too few on-screen training clips; a corpus without them keeps
    the settings it had before the option existed (so its folder still resumes)."""
    assert run_cli(main, ["--out", str(tmp_path / "w"), "--clips", "6", "--classes", "2", "--seconds", "1",
                          "--test-fraction", "0", "--offscreen-fraction", "0", "--defects", "2"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: --defects: 2 defects of each kind need 10 on-screen training clips, the corpus has 6\n")
    assert not (tmp_path / "w").exists()
    assert "defects" not in settings(SynthConfig()) and settings(SynthConfig(defects=2))["defects"] == 2
    assert run_cli(main, ["--out", str(tmp_path / "w"), "--defects", "-1"]) == 2
    assert "must not be negative" in capsys.readouterr().err
