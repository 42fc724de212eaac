"""eval.run: the maps in the store equal the model's own computation; batching does not change them; end to end on
a tiny randomly initialised checkpoint (width 8); rescore reproduces metrics.json; bad inputs give one-line errors."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from eval.config import EvalConfig
from eval.inputs import load_image, load_waveform
from eval.models.ssl_san import wrap
from eval.run import evaluate
from eval.store import read_store
from eval.testsets import read_testset
from pipeline.load.features import logmel, seconds_to_samples
from pipeline.load.negatives import noise_logmels
from tests.eval_fixtures import make_is3, make_vggss
from trainer.config import ModelConfig
from trainer.model import AVENet

FAST = dict(seeds=[11, 22], num_workers=0, device="cpu", audio_seconds=0.5, image_size=64)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return AVENet(ModelConfig(width=8)).eval()


def test_store_maps_equal_the_models_computation(tmp_path, tiny_model):
    ts = read_testset("is3", make_is3(tmp_path / "is3"))
    cfg = EvalConfig(batch_size=3, **FAST)
    evaluate(wrap(tiny_model, cfg.image_size), ts, cfg, tmp_path / "a.zarr", {"testset": "is3"})
    st = read_store(tmp_path / "a.zarr")
    n, length = len(ts), seconds_to_samples(0.5)
    with torch.no_grad():
        v = tiny_model.encode_image(torch.stack([load_image(s.image, 64) for s in ts.samples]))
        a = tiny_model.encode_audio(torch.stack([logmel(load_waveform(s.audio, length))[None] for s in ts.samples]))
        pos = tiny_model(torch.stack([load_image(s.image, 64) for s in ts.samples]),
                         torch.stack([logmel(load_waveform(s.audio, length))[None] for s in ts.samples]))["map"]
        a_sil = tiny_model.encode_audio(torch.zeros(1, 1, 257, 1 + length // 239))
        a_noise = tiny_model.encode_audio(noise_logmels(22, range(n), length))
    assert st["pos"].shape == (n, 4, 4) and st["noise"].shape == (n, 2, 4, 4)
    np.testing.assert_allclose(st["pos"], pos[:, 0].numpy(), atol=1e-5)
    off = st["offscreen_index"]
    np.testing.assert_allclose(st["offscreen"][:, 1], torch.einsum("nchw,nc->nhw", v, a[off[1]]).numpy(), atol=1e-5)
    np.testing.assert_allclose(st["silence"], torch.einsum("nchw,c->nhw", v, a_sil[0]).numpy(), atol=1e-5)
    np.testing.assert_allclose(st["noise"][:, 1], torch.einsum("nchw,nc->nhw", v, a_noise).numpy(), atol=1e-5)
    np.testing.assert_allclose(st["retrieval"], torch.einsum("ichw,jc->ijhw", v, a).amax((2, 3)).numpy(), atol=1e-5)
    assert np.array_equal(st["max_pos"], st["pos"].reshape(n, -1).max(1))
    assert np.array_equal(st["max_offscreen"], st["offscreen"].reshape(n, 2, -1).max(2))
    assert np.array_equal(st["gt"][3], ts.gt(3)) and list(st["keys"]) == ts.keys and list(st["labels"]) == ts.labels
    assert list(st["groups"])[:2] == ["cat_dog_1", "cat_dog_1"]
    np.testing.assert_allclose(st["emb_audio"], a.numpy(), atol=1e-5)
    np.testing.assert_allclose(st["emb_image_mean"], v.mean((2, 3)).numpy(), atol=1e-5)
    assert st.attrs["complete"] and st.attrs["seeds"] == [11, 22] and st.attrs["gt_kind"] == "mask"
    assert st["overlay_image"].shape == (4, 224, 224, 3) and st["overlay_index"][0] == 0


def test_batch_size_does_not_change_the_store(tmp_path, tiny_model):
    ts = read_testset("vggss", make_vggss(tmp_path / "v"))
    evaluate(wrap(tiny_model, 64), ts, EvalConfig(batch_size=2, **FAST), tmp_path / "b2.zarr", {})
    evaluate(wrap(tiny_model, 64), ts, EvalConfig(batch_size=5, **FAST), tmp_path / "b5.zarr", {})
    s2, s5 = read_store(tmp_path / "b2.zarr"), read_store(tmp_path / "b5.zarr")
    for name in ("pos", "silence", "noise", "offscreen", "retrieval", "gt", "offscreen_index"):
        np.testing.assert_allclose(s2[name], s5[name], atol=1e-6, err_msg=name)
    assert s2.attrs["notes"]["empty_gt"] == ["ddddddddddd_000040"]


def _save_tiny_checkpoint(run_dir: Path, width: int = 8, seed: int = 0) -> Path:
    import dataclasses

    from trainer.checkpoint import save_checkpoint
    from trainer.config import TrainConfig
    torch.manual_seed(seed)
    cfg = dataclasses.replace(TrainConfig(), model=ModelConfig(width=width))
    model = AVENet(cfg.model)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad])
    return save_checkpoint(run_dir, 1, model, opt.state_dict(), {}, cfg, keep=1)


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A randomly initialised width-8 checkpoint written by the trainer's own checkpoint code."""
    return _save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "run")


def test_end_to_end_on_the_synthetic_vggss_then_rescore(synth_corpus, tiny_ckpt, tmp_path):
    import json

    from eval.rescore import main as rescore_main
    from eval.run import main
    out = tmp_path / "results" / "tiny"
    data = synth_corpus / "testsets" / "vggss"
    assert main(["--ckpt", str(tiny_ckpt), "--testset", "vggss", "--data", str(data), "--out", str(out),
                 "num_workers=1", "seeds=[1234,2345]"]) == 0
    for f in ("metrics.json", "tables.md", "tables.csv", "maxima.png", "overlays_vggss_run.png", "config.yaml"):
        assert (out / f).is_file() and (out / f).stat().st_size > 0, f
    info = json.loads((out / "metrics.json").read_text())
    n = len(read_testset("vggss", data))
    assert info["testset"] == "vggss" and info["model"] == "run" and info["samples"] == n   # the run folder's name
    assert info["seeds"] == [1234, 2345]
    assert info["train_san"] == {"S": True, "N": True, "L_S": True, "L_N": True}
    m = info["metrics"]
    assert m["negatives"]["offscreen"]["maps"] == 2 * n and m["samples"] == n
    assert set(m["tables"]) >= {"table1", "table2", "table3", "table4"}
    st = read_store(out / "maps.zarr")
    assert st["pos"].shape == (n, 14, 14) and st["noise"].shape == (n, 2, 14, 14)
    md = (out / "tables.md").read_text()
    assert "| VGG-SS | run |" in md and "Table 2" in md and "tau_U" in md
    # rescore into another folder and in place: identical metrics
    before = (out / "metrics.json").read_bytes()
    assert rescore_main([str(out), "--out", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert again.pop("store") == str((out / "maps.zarr").resolve())
    assert json.dumps(again, sort_keys=True) == json.dumps(info, sort_keys=True)
    assert (tmp_path / "again" / "overlays_vggss_run.png").is_file()
    assert rescore_main([str(out)]) == 0
    assert (out / "metrics.json").read_bytes() == before
    # another threshold, and tau_U from a calibration run
    assert rescore_main([str(out), "--out", str(tmp_path / "fixed"), "metrics.tau=0.25"]) == 0
    fixed = json.loads((tmp_path / "fixed" / "metrics.json").read_text())["metrics"]
    assert fixed["thresholds"]["tau_U"] == 0.25 and fixed["positive"]["universal"]["threshold"] == 0.25
    assert rescore_main([str(out), "--out", str(tmp_path / "cal"), "--calibration", str(out)]) == 0
    cal = json.loads((tmp_path / "cal" / "metrics.json").read_text())
    assert cal["calibration"] == str(out) and cal["metrics"]["thresholds"]["source"] == "calibration set"
    assert cal["metrics"]["thresholds"]["tau_U"] == m["thresholds"]["tau_U"]


def _cli(argv, capsys):
    from eval.run import main
    from pipeline.common.cli import run_cli
    rc = run_cli(main, argv)
    err = capsys.readouterr().err.strip().splitlines()   # progress bars come first; the error is the last line
    return rc, err[-1] if err else ""


def test_bad_inputs_give_one_line_errors(tmp_path, tiny_ckpt, capsys):
    import json
    data = make_vggss(tmp_path / "vggss")
    out = tmp_path / "res"
    base = ["--testset", "vggss", "--data", str(data), "--out", str(out), "num_workers=0", "seeds=[1]",
            "audio_seconds=0.5", "image_size=64"]
    rc, err = _cli(["--ckpt", str(tmp_path / "nope")] + base, capsys)
    assert rc == 2 and err.startswith("error: ") and "nope" in err
    # incompatible checkpoint: the weights of a width-16 model under a width-8 config
    wide = _save_tiny_checkpoint(tmp_path / "wide", width=16)
    cfg_text = (wide / "config.yaml").read_text().replace("width: 16", "width: 8")
    (wide / "config.yaml").write_text(cfg_text)
    rc, err = _cli(["--ckpt", str(wide)] + base, capsys)        # the edited config.yaml no longer matches its record
    assert rc == 2 and err == f"error: {wide}: damaged checkpoint: config.yaml: content differs from what was " \
                              f"recorded (sha256)"
    state = json.loads((wide / "state.json").read_text())
    del state["integrity"]                                    # a checkpoint written before the record existed
    (wide / "state.json").write_text(json.dumps(state))
    rc, err = _cli(["--ckpt", str(wide)] + base, capsys)
    assert rc == 2 and err.startswith(f"error: {wide / 'model.safetensors'}: cannot load weights: ")
    rc, err = _cli(["--ckpt", str(tiny_ckpt), "--testset", "s4", "--data", str(data), "--out", str(out)], capsys)
    assert rc == 2 and "s4_meta_data.csv" in err
    rc, err = _cli(["--ckpt", str(tiny_ckpt), "--testset", "flickr", "--data", str(data), "--out", str(out)], capsys)
    assert rc == 2 and "unknown test set" in err
    assert not out.exists()                                  # nothing written for any of these
    # a corrupt audio file is found while running: one line naming it, the store stays incomplete, no metrics
    (data / "audio" / "ccccccccccc_000000.wav").write_bytes(b"RIFF garbage")
    rc, err = _cli(["--ckpt", str(tiny_ckpt)] + base, capsys)
    assert rc == 2 and err.endswith("ccccccccccc_000000.wav: cannot read audio: Format not recognised.")
    assert not (out / "metrics.json").exists()
    from eval.errors import EvalError
    with pytest.raises(EvalError, match="no map store here"):   # the failed run's staging folder is gone too
        read_store(out / "maps.zarr")
    # the same from a DataLoader worker process, and for an image
    rc, err = _cli(["--ckpt", str(tiny_ckpt)] + base + ["num_workers=1"], capsys)
    assert rc == 2 and err.endswith("ccccccccccc_000000.wav: cannot read audio: Format not recognised.")
    (data / "audio" / "ccccccccccc_000000.wav").write_bytes((data / "audio" / "-aaaaaaaaaa_000010.wav").read_bytes())
    (data / "frames" / "eeeeeeeeeee_000050.jpg").write_bytes(b"\xff\xd8\xff truncated")
    rc, err = _cli(["--ckpt", str(tiny_ckpt)] + base + ["num_workers=1"], capsys)
    assert rc == 2 and err.startswith(f"error: {data / 'frames' / 'eeeeeeeeeee_000050.jpg'}: cannot read image")
    (data / "audio" / "ccccccccccc_000000.wav").unlink()
    rc, err = _cli(["--ckpt", str(tiny_ckpt)] + base, capsys)
    assert rc == 2 and err == (f"error: {data}: 1 of 5 vggss samples have missing files (first: "
                               f"{data / 'audio' / 'ccccccccccc_000000.wav'}); --allow-missing scores the 4 that "
                               f"are there")


def test_coverage_subset_and_missing_files_in_every_row(tmp_path, tiny_ckpt, capsys):
    import json

    from eval.report import main as report_main
    from pipeline.common.cli import run_cli
    from tests.eval_fixtures import make_vggss
    data = make_vggss(tmp_path / "vggss")
    (data / "audio" / "ccccccccccc_000000.wav").unlink()
    fast = ["num_workers=0", "seeds=[1]", "batch_size=2"]
    common = ["--ckpt", str(tiny_ckpt), "--testset", "vggss", "--data", str(data)] + fast
    rc, _ = _cli(common + ["--out", str(tmp_path / "all"), "--name", "all", "--allow-missing"], capsys)
    assert rc == 0
    info = json.loads((tmp_path / "all" / "metrics.json").read_text())
    cov = info["coverage"]
    assert (cov["scored"], cov["annotated"], cov["missing"], cov["subset"]) == (4, 5, 1, None)
    assert info["samples"] == 4 and "| VGG-SS | all | 4/5 |" in (tmp_path / "all" / "tables.md").read_text()
    subset = tmp_path / "ssl_tie_list.txt"
    subset.write_text("# ids, as SSL-TIE's test_vggss_4911.txt\n-aaaaaaaaaa_000010\nbbbbbbbbbbb_000030\n\n")
    rc, _ = _cli(common + ["--out", str(tmp_path / "two"), "--name", "two", "--subset", str(subset)], capsys)
    assert rc == 0
    two = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert two["coverage"]["scored"] == 2 and two["coverage"]["subset"] == str(subset.resolve())
    assert "| VGG-SS | two | 2/5 |" in (tmp_path / "two" / "tables.md").read_text()
    # rows that scored different samples are not put side by side unless asked
    rc = run_cli(report_main, [str(tmp_path / "all"), str(tmp_path / "two"), "--out", str(tmp_path / "report")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err == ("error: VGG-SS: the rows score different samples (all 4/5, two 2/5); evaluate them "
                               "on the same subset, or add --mixed-coverage to put them side by side")
    assert not (tmp_path / "report").exists()
    assert run_cli(report_main, [str(tmp_path / "all"), str(tmp_path / "two"), "--out", str(tmp_path / "report"),
                                 "--mixed-coverage"]) == 0
    md = (tmp_path / "report" / "tables.md").read_text()
    assert "| VGG-SS | all | 4/5 |" in md and "| VGG-SS | two | 2/5 |" in md
    subset.write_text("-aaaaaaaaaa_000010\nzzzzzzzzzzz_000000\n")
    rc, err = _cli(common + ["--out", str(tmp_path / "bad"), "--subset", str(subset)], capsys)
    assert rc == 2 and err == (f"error: {subset}: 1 of its 2 ids are not in the vggss annotations (first: "
                               f"'zzzzzzzzzzz_000000')")


def test_s4_uses_five_seconds_and_one_audio_per_video(tmp_path, tiny_model):
    from tests.eval_fixtures import make_s4
    ts = read_testset("s4", make_s4(tmp_path / "s4"))
    cfg = EvalConfig(seeds=[3], num_workers=0, device="cpu", image_size=64, batch_size=10)
    evaluate(wrap(tiny_model, cfg.image_size), ts, cfg, tmp_path / "s4.zarr", {"testset": "s4"})
    st = read_store(tmp_path / "s4.zarr")
    assert st.attrs["audio_seconds"] == 5.0 and st["pos"].shape == (20, 4, 4)
    # the five frames of a video share its audio embedding, and the offscreen audio is another class's video
    np.testing.assert_array_equal(st["emb_audio"][0], st["emb_audio"][4])
    labels = np.array(ts.labels)
    assert np.all(labels[st["offscreen_index"][0]] != labels)


def test_module_entry_point_exit_status(tmp_path):
    import subprocess
    import sys
    proc = subprocess.run([sys.executable, "-m", "eval.run", "--ckpt", str(tmp_path / "none"), "--testset", "vggss",
                           "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2
    assert proc.stderr == f"error: {tmp_path / 'missing'}: test set folder not found\n"
