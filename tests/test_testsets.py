"""Test-set readers on hand-made official-format files, and the offscreen-audio choice."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from eval.errors import EvalError
from eval.offscreen import OFFSCREEN_SEEDS, offscreen_choice
from eval.testsets import boxes_to_gt, read_testset
from pipeline.common.cli import run_cli
from pipeline.load.negatives import noise_logmels, silence_logmel
from tests.eval_fixtures import VGGSS_RECORDS, make_is3, make_s4, make_vggss


def test_vggss_union_of_boxes_and_clipped_corrupt_boxes(tmp_path):
    ts = read_testset("vggss", make_vggss(tmp_path / "vggss"))
    assert ts.keys[0] == "-aaaaaaaaaa_000010" and ts.gt_kind == "box" and ts.audio_seconds == 10.0
    assert ts.samples[0].image.name == "-aaaaaaaaaa_000010.jpg" and ts.samples[0].audio.parent.name == "audio"
    expected = np.zeros((224, 224), np.uint8)
    expected[56:168, 56:168] = 1
    assert np.array_equal(ts.gt(0), expected)
    union = np.zeros((224, 224), np.uint8)
    union[0:112, 0:112] = 1
    union[112:224, 112:224] = 1
    assert np.array_equal(ts.gt(1), union)
    # the sentinel x1 is clipped to 0, y2 = 1.2 to 1; the zero-width second box adds nothing
    assert ts.samples[2].boxes == ((0, 22, 112, 224), (1, 3, 1, 3))
    corrupt = np.zeros((224, 224), np.uint8)
    corrupt[22:224, 0:112] = 1
    assert np.array_equal(ts.gt(2), corrupt)
    # int truncation after x 224 (0.1 * 224 = 22.4 -> 22, 0.4 * 224 = 89.6 -> 89)
    assert ts.samples[4].boxes == ((22, 44, 67, 89),)
    # a clip whose only box is degenerate stays, with an empty ground truth, and is reported
    assert ts.gt(3).sum() == 0
    assert {k: ts.notes[k] for k in ("degenerate_boxes", "empty_gt")} == \
        {"degenerate_boxes": 2, "empty_gt": ["ddddddddddd_000040"]}


def test_vggss_bad_inputs_name_the_file(tmp_path):
    root = make_vggss(tmp_path / "v")
    (root / "frames" / "bbbbbbbbbbb_000030.jpg").unlink()
    with pytest.raises(EvalError, match=r"1 of 5 vggss samples have missing files \(first: .*bbbbbbbbbbb_000030.jpg\); "
                                        r"--allow-missing scores the 4 that are there"):
        read_testset("vggss", root)
    kept = read_testset("vggss", root, allow_missing=True)
    assert "bbbbbbbbbbb_000030" not in kept.keys and len(kept) == 4
    assert {k: kept.notes["coverage"][k] for k in ("scored", "annotated", "missing")} == \
        {"scored": 4, "annotated": 5, "missing": 1}
    (root / "vggss.json").write_text("[{\"file\": 1}")
    with pytest.raises(EvalError, match="vggss.json: not valid JSON"):
        read_testset("vggss", root)
    (root / "vggss.json").write_text(json.dumps([{"file": "x", "class": "c", "bbox": [[0, 0, 1]]}]))
    with pytest.raises(EvalError, match="record 0: a box must be 4"):
        read_testset("vggss", root)
    (root / "vggss.json").unlink()
    with pytest.raises(EvalError, match=r"vggss.json: annotation file not found \(also looked for "
                                        r"annotations.json, vggss_annotations.json\)"):
        read_testset("vggss", root)
    with pytest.raises(EvalError, match="test set folder not found"):
        read_testset("vggss", tmp_path / "nowhere")
    with pytest.raises(EvalError, match="box annotations only"):
        read_testset("vggss", root, gt="mask")


def test_is3_two_targets_per_image_masks_and_boxes(tmp_path):
    root = make_is3(tmp_path / "is3", mask_ext=".png")
    ts = read_testset("is3", root)
    assert ts.gt_kind == "mask" and len(ts) == 8
    s = ts.samples[0]
    assert (s.key, s.group, s.label) == ("cat_dog_1_cat", "cat_dog_1", "cat")
    assert s.image == root / "images" / "cat_dog_1_cat.jpg" and s.audio == root / "audio_wav" / "cat_dog_1_cat.wav"
    assert ts.samples[6].group == "fox_train" and ts.samples[6].label == "subway"
    # grey levels 255 and 200 are > 127, 60 is not: the mask is the box grown by one pixel
    grown = np.zeros((224, 224), np.uint8)
    grown[19:121, 9:101] = 1
    assert np.array_equal(ts.gt(0), grown)
    boxes = read_testset("is3", root, gt="box")
    assert np.array_equal(boxes.gt(0), boxes_to_gt([(10, 20, 100, 120)]))


def test_is3_jpeg_masks_binarised(tmp_path):
    ts = read_testset("is3", make_is3(tmp_path / "is3"))
    gt, ref = ts.gt(1).astype(bool), boxes_to_gt([(119, 29, 224, 201)]).astype(bool)
    assert (gt & ref).sum() / (gt | ref).sum() > 0.97


def test_s4_five_frames_per_video_with_one_audio(tmp_path):
    for nested in (True, False):
        root = make_s4(tmp_path / f"s4_{nested}", nested=nested)
        ts = read_testset("s4", root)
        assert len(ts) == 20 and ts.audio_seconds == 5.0 and ts.gt_kind == "mask"
        assert ts.keys[:5] == [f"vid_A-0001_{k}" for k in range(1, 6)]
        assert {s.audio for s in ts.samples[:5]} == {ts.samples[0].audio}
        assert ts.samples[0].audio.name == "vid_A-0001.wav" and ts.samples[0].group == "vid_A-0001"
        assert "vid_E-0005" not in {s.group for s in ts.samples}   # train split skipped
        assert ts.gt(2).sum() == 62 * 102                             # box (60, 20, 120, 120) grown by 1
    (root / "s4_meta_data.csv").write_text("a,b\n")
    with pytest.raises(EvalError, match="s4_meta_data.csv: expected a header"):
        read_testset("s4", root)


def test_offscreen_never_same_class_both_excluded_on_is3(tmp_path):
    ts = read_testset("is3", make_is3(tmp_path / "is3"))
    choice = offscreen_choice(ts)
    assert choice.shape == (len(OFFSCREEN_SEEDS), len(ts))
    labels = np.array(ts.labels)
    for i, s in enumerate(ts.samples):
        image_classes = {t.label for t in ts.samples if t.group == s.group}
        assert not image_classes & set(labels[choice[:, i]])
    # deterministic for given seeds, different across seeds
    assert np.array_equal(choice, offscreen_choice(ts))
    assert not np.array_equal(offscreen_choice(ts, seeds=(1,)), offscreen_choice(ts, seeds=(2,)))


def test_offscreen_vggss_and_s4_pool(tmp_path):
    ts = read_testset("vggss", make_vggss(tmp_path / "v"))
    choice = offscreen_choice(ts, seeds=tuple(range(20)))
    labels = np.array(ts.labels)
    assert np.all(labels[choice] != labels[None, :])
    s4 = read_testset("s4", make_s4(tmp_path / "s4"))
    c4 = offscreen_choice(s4)
    assert set(np.unique(c4)) <= {0, 5, 10, 15}          # one audio per video: the first frame's sample
    assert np.all(np.array(s4.labels)[c4] != np.array(s4.labels)[None, :])


def test_offscreen_needs_another_class(tmp_path):
    records = [{"file": f"clip{i:07d}_000000", "class": "dog", "bbox": [[0, 0, 1, 1]]} for i in range(2)]
    ts = read_testset("vggss", make_vggss(tmp_path / "v", records))
    with pytest.raises(EvalError, match="no other class"):
        offscreen_choice(ts)


def test_noise_is_seeded_per_sample_and_silence_constant():
    a = noise_logmels(1234, [3, 4], 1600)
    assert a.shape == (2, 1, 257, 7) and a.dtype == torch.float32 and float(a.min()) >= 0.0   # linear mel power
    assert torch.equal(a[1:], noise_logmels(1234, [4], 1600))          # independent of the batch it is drawn in
    assert not torch.equal(a[:1], a[1:])
    assert not torch.equal(a[:1], noise_logmels(2345, [3], 1600))
    assert float(noise_logmels(1, [0], 1600, db=True).max()) > 0.0      # dB switch
    s = silence_logmel(3, 1600)
    assert s.shape == (3, 1, 257, 7) and float(s.abs().max()) == 0.0
    assert float(silence_logmel(1, 1600, db=True).max()) == -100.0


def _build_is3plus(tmp_path, is3, seed, out_name, mapping=None):
    from eval.is3plus import main
    from tests.eval_fixtures import make_clean_audio
    clean = tmp_path / "clean"
    if not clean.exists():
        make_clean_audio(clean, ["feline", "dog", "bird", "car", "horn", "subway", "fox"], per_class=3)
        (clean / "class_mapping.json").write_text(json.dumps(mapping or {"cat": "feline", "dog": "canine"}))
    out = tmp_path / out_name
    assert main(["--is3", str(is3), "--clean-audio", str(clean), "--out", str(out), "--seed", str(seed)]) == 0
    return out


def test_is3plus_builder_is_deterministic_and_readable(tmp_path):
    import soundfile as sf
    is3 = make_is3(tmp_path / "is3")
    a = _build_is3plus(tmp_path, is3, 7, "a")
    b = _build_is3plus(tmp_path, is3, 7, "b")
    c = _build_is3plus(tmp_path, is3, 8, "c")
    ann = json.loads((a / "IS3plus_annotation.json").read_text())
    assert ann == json.loads((b / "IS3plus_annotation.json").read_text())
    assert [r["source_audio"] for r in ann] != \
        [r["source_audio"] for r in json.loads((c / "IS3plus_annotation.json").read_text())]
    for r in ann:
        assert (a / r["audio"]).read_bytes() == (b / r["audio"]).read_bytes()
    assert ann[0]["class"] == "feline" and ann[0]["is3_class"] == "cat"
    assert ann[0]["source_audio"].startswith("feline/") and (a / "config.yaml").is_file()
    ts = read_testset("is3plus", a)
    assert ann[1]["class"] == "canine" and ann[1]["source_audio"].startswith("dog/")   # folder named by IS3 class
    assert ts.labels[:2] == ["feline", "canine"] and ts.samples[0].group == "cat_dog_1"
    assert np.array_equal(ts.gt(0), read_testset("is3", is3).gt(0))
    wave, sr = sf.read(ts.samples[0].audio)
    assert sr == 16000 and wave.ndim == 1 and abs(np.abs(wave).max() - 0.9) < 1e-3
    assert abs(len(wave) - 0.4 * 16000) <= 2


def test_is3plus_missing_class_audio(tmp_path, capsys):
    from eval.is3plus import main
    is3 = make_is3(tmp_path / "is3")
    (tmp_path / "clean" / "bird").mkdir(parents=True)
    (tmp_path / "clean" / "class_mapping.json").write_text("{}")
    rc = run_cli(main, ["--is3", str(is3), "--clean-audio", str(tmp_path / "clean"), "--out", str(tmp_path / "o")])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "no clean audio for IS3+ class 'cat'" in err
    assert not (tmp_path / "o" / "IS3plus_annotation.json").exists()


def test_readers_and_is3plus_on_the_synthetic_corpus(synth_corpus, tmp_path):
    """The synthetic corpus writes the public formats; every reader takes them, and IS3+ builds from its clean audio."""
    sets = synth_corpus / "testsets"
    vggss = read_testset("vggss", sets / "vggss")
    assert len(vggss) > 0 and vggss.notes["degenerate_boxes"] > 0      # its deliberately corrupt boxes
    assert all(vggss.gt(i).any() for i in range(len(vggss)))
    is3 = read_testset("is3", sets / "is3")
    groups = {}
    for s in is3.samples:
        groups.setdefault(s.group, []).append(s.label)
    assert all(len(v) == 2 for v in groups.values())
    assert all(is3.gt(i).any() for i in range(len(is3)))
    s4 = read_testset("s4", sets / "s4")
    assert len(s4) == 5 * len({s.group for s in s4.samples})
    from eval.is3plus import main
    out = tmp_path / "is3plus"
    assert main(["--is3", str(sets / "is3"), "--clean-audio", str(sets / "is3_clean_audio"), "--out", str(out)]) == 0
    plus = read_testset("is3plus", out)
    mapping = json.loads((sets / "is3_clean_audio" / "class_mapping.json").read_text())
    assert plus.labels == [mapping.get(c, c) for c in is3.labels]
    assert [s.group for s in plus.samples] == [s.group for s in is3.samples]
    assert np.array_equal(plus.gt(0), is3.gt(0))
    choice = offscreen_choice(plus)
    assert all(not {t.label for t in plus.samples if t.group == s.group} & {plus.labels[j] for j in choice[:, i]}
               for i, s in enumerate(plus.samples))


def test_annotation_files_under_the_names_the_public_code_uses(tmp_path):
    root = make_vggss(tmp_path / "v")
    keys = read_testset("vggss", root).keys
    for name in ("annotations.json", "vggss_annotations.json"):
        (root / "vggss.json").rename(root / name)
        assert read_testset("vggss", root).keys == keys
        (root / name).rename(root / "vggss.json")
    (root / "annotations.json").write_text((root / "vggss.json").read_text())    # the same list twice: fine
    assert read_testset("vggss", root).keys == keys
    (root / "annotations.json").write_text(json.dumps(VGGSS_RECORDS[:2]))
    with pytest.raises(EvalError, match="vggss.json and annotations.json are both here and differ"):
        read_testset("vggss", root)
    is3 = make_is3(tmp_path / "is3")
    labels = read_testset("is3", is3).labels
    (is3 / "IS3_annotation.json").rename(is3 / "synthetic3240_bbox.json")      # SSL-Align's name
    (is3 / "audio_wav").rename(is3 / "audio_waw")                              # its README's spelling
    ts = read_testset("is3", is3)
    assert ts.labels == labels and all(s.audio.parent.name == "audio_waw" and s.audio.is_file() for s in ts.samples)


def test_offscreen_audio_is_never_of_a_class_visible_in_the_frame(tmp_path):
    records = [dict(r, visible=[r["class"], "cat meowing"] if i % 2 == 0 else [r["class"]])
               for i, r in enumerate(VGGSS_RECORDS)]
    ts = read_testset("vggss", make_vggss(tmp_path / "v", records))
    assert ts.samples[0].visible == ("cat meowing", "dog barking") and ts.samples[1].visible == ("cat meowing",)
    choice = offscreen_choice(ts, seeds=tuple(range(50)))
    labels = np.array(ts.labels)
    for i, s in enumerate(ts.samples):
        drawn = set(labels[choice[:, i]])
        assert not drawn & (set(s.visible) | {s.label})
    # sample 0 (dog barking, a cat visible) can only hear the tambourine; sample 2 likewise
    assert set(labels[choice[:, 0]]) == set(labels[choice[:, 2]]) == {"playing tambourine"}
    bad = [dict(VGGSS_RECORDS[0], visible="dog barking")] + VGGSS_RECORDS[1:]
    with pytest.raises(EvalError, match="record 0: visible must be a list of class names"):
        read_testset("vggss", make_vggss(tmp_path / "w", bad))


def test_the_synthetic_test_sets_record_what_is_visible(synth_corpus):
    sets = synth_corpus / "testsets"
    for name in ("vggss", "s4"):
        ts = read_testset(name, sets / name)
        assert all(s.label in s.visible or not s.boxes and name == "vggss" for s in ts.samples)
        with_distractor = [i for i, s in enumerate(ts.samples) if set(s.visible) - {s.label}]
        assert with_distractor                          # the corpus puts other classes' objects in frames
        choice = offscreen_choice(ts)
        labels = np.array(ts.labels)
        for i in with_distractor:
            assert not set(labels[choice[:, i]]) & set(ts.samples[i].visible)


def test_subset_keeps_samples_or_whole_groups(tmp_path):
    s4 = make_s4(tmp_path / "s4")
    listed = tmp_path / "videos.txt"
    listed.write_text("vid_B-0002\nvid_C-0003_2  # one frame of another video\n")
    ts = read_testset("s4", s4, subset=listed)
    assert ts.keys == [f"vid_B-0002_{k}" for k in range(1, 6)] + ["vid_C-0003_2"]
    assert ts.notes["coverage"]["scored"] == 6 and ts.notes["coverage"]["annotated"] == 20
    full = read_testset("s4", s4).notes["coverage"]
    assert full["scored"] == full["annotated"] == 20 and full["keys_sha256"] != ts.notes["coverage"]["keys_sha256"]
