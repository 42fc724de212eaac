"""The adapters of other methods (eval.models.ssl_tie, eval.models.ezvsl, eval.models.lvs) against the official code,
foreign checkpoint safety, eval.convert and `eval.run --model` end to end.

Golden values: produced on 2026-12-07 by running the official classes and loaders of xavijuanola/vssl_eval at commit
e8ebbc90d51318cd2ca7ac2993dfc6af75d90d18 on this machine (`models/model.py`: EZVSL(0.03, 512), FNAC(0.03, 512, 0, 0),
SLAVC(0.03, 512, 0, 0, 0.9, 0.9, False, None); `models/model_lvs.py`: AVENet with the evaluation's LVS arguments;
`models/model_ssltie.py`: AVENet_ssltie; `datasets/datasets.py`: load_spectrogram and the test dataset's transforms;
`datasets/datasets_lvs.py`: the LVS test dataset's __getitem__ on a stand-in dataset object), torchvision's and the
LVS resnet18 built without their pretrained download, with the weights of tests/golden_weights.py loaded strictly into
the official networks. The official map is EZ-VSL / FNAC / SLAVC's `Savl`, LVS's and SSL-TIE's `A`; the embeddings
are the normalised features their forward passes to the loss (LVS: its compute_embeddings, normalised as its forward
does). Our networks agreed with the official ones to 6e-8 (map) and exactly (embeddings); our inputs equalled theirs
exactly.
"""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
import zarr
from PIL import Image

from eval.convert import main as convert_main
from eval.errors import EvalError
from eval.models import foreign_network, load_adapter
from eval.models.ezvsl import SpectrogramInputs
from eval.models.lvs import WindowInputs
from eval.models.weights import read_weights
from eval.report import main as report_main
from eval.rescore import main as rescore_main
from eval.run import main as run_main
from pipeline.load.negatives import noise_waveforms
from tests.eval_fixtures import make_vggss
from tests.golden_weights import golden_inputs, golden_state

# (map[:, 0, 0], map[:, 3, 4], map summed over pixels, audio embedding [:, :3], visual map [0, :3, 0, 0],
#  visual map [1, -1, 6, 6]) of the official networks on golden_inputs() with golden_state() weights
EZVSL = ([0.4523226, 0.4594189], [0.4779250, 0.4840449], [23.062239, 23.274597],
         [[-0.08644594, 0.002306147, -0.05817969], [-0.08888771, 0.003615344, -0.05879889]],
         [-0.03445966, 0.01427844, 0.01511972], 0.1313398)
GOLDEN = {
    "ezvsl": EZVSL,
    "fnac": EZVSL,          # FNAC's network is EZ-VSL's (its dropouts and pooling hold no weights)
    "slavc": ([0.5140765, 0.5132276], [0.5179087, 0.5211439], [25.330038, 25.223135],
              [[0.004679970, -0.03134180, 0.03145489], [0.007458010, -0.03312979, 0.03889982]],
              [-0.03886402, 0.08845057, 0.01428567], -0.03012502),
}
# LVS / SSL-Align: (A[:, 0, 0], A[:, 7, 7], A summed, audio embedding [:, :3], visual map [0, :3, 0, 0],
#  visual map [1, -1, 13, 13]) on golden_inputs()'s images and a [2, 1, 257, 299] spectrogram seeded 99
LVS = ([0.5415615, 0.5389866], [0.5132048, 0.5288882], [100.825203, 101.090363],
       [[0.06922573, 0.02578833, 0.02831322], [0.07770457, 0.02044618, 0.03487080]],
       [0.01504738, 0.003017847, 0.005560999], 0.05596608)
GOLDEN["lvs"] = GOLDEN["ssl_align"] = LVS
# SSL-TIE (models/model_ssltie.py AVENet_ssltie, heatmap_size 14, its `val` map and `train` features), a
# [2, 1, 257, 300] log-mel seeded 98: the same trunk as LVS plus SSL-TIE's three unused heads
GOLDEN["ssl_tie"] = ([0.5446662, 0.5357368], [0.5168110, 0.5287355], [101.358559, 101.104713],
                     [[0.06714534, 0.02433880, 0.02830829], [0.06937378, 0.02098083, 0.03237621]],
                     [0.01504738, 0.003017847, 0.005560999], 0.05596608)
OFFICIAL_KEYS = {"ezvsl": 244, "fnac": 244, "slavc": 496, "lvs": 248, "ssl_align": 248, "ssl_tie": 257}
FOURTEEN = ("lvs", "ssl_align", "ssl_tie")      # SSL-TIE-style trunks: 14 x 14 maps, cosine maps
FAMILIES = list(OFFICIAL_KEYS)


@pytest.mark.parametrize("name", FAMILIES)
def test_networks_give_the_official_maps_and_embeddings(name, tmp_path):
    net = foreign_network(name).eval()
    state = golden_state(net.state_dict())
    assert len(state) == OFFICIAL_KEYS[name] and "imgnet.layer4.1.bn2.bias" in state
    assert ("audnet.conv1_a.weight" if name in FOURTEEN else "audnet.conv1.weight") in state
    net.load_state_dict(state, strict=True)
    image, spec = golden_inputs()
    if name in ("lvs", "ssl_align"):
        spec = torch.randn(2, 1, 257, 299, generator=torch.Generator().manual_seed(99))
    if name == "ssl_tie":
        spec = torch.randn(2, 1, 257, 300, generator=torch.Generator().manual_seed(98))
    with torch.no_grad():
        v, a = net.encode_image(image), net.encode_audio(spec)
    path = tmp_path / f"{name}.pth"             # saved as the released files are: under `model`, DataParallel names
    torch.save({"model": {"module." + k: v for k, v in state.items()}}, path)
    adapter = load_adapter(name, str(path), None)
    m = adapter.to_map(torch.einsum("bchw,bc->bhw", v, a))
    m00, mid, total, a3, v03, v_last = GOLDEN[name]
    side = 14 if name in FOURTEEN else 7
    assert v.shape == (2, 1024 if name == "slavc" else 512, side, side) and a.shape == (2, v.shape[1])
    assert torch.allclose(v.norm(dim=1), torch.ones(2, side, side), atol=1e-6)
    assert torch.allclose(a.norm(dim=1), torch.ones(2))
    assert m[:, 0, 0].tolist() == pytest.approx(m00, abs=1e-5)
    assert (m[:, 7, 7] if side == 14 else m[:, 3, 4]).tolist() == pytest.approx(mid, abs=1e-5)
    assert m.sum((1, 2)).tolist() == pytest.approx(total, rel=1e-5)
    assert a[:, :3].tolist() == [pytest.approx(row, abs=1e-5) for row in a3]
    assert v[0, :3, 0, 0].tolist() == pytest.approx(v03, abs=1e-5)
    assert float(v[1, -1, side - 1, side - 1]) == pytest.approx(v_last, abs=1e-5)


def _tone(path, seconds: float, rng) -> None:
    """The official comparison's test signal: an amplitude-modulated 440 Hz tone plus noise, 16-bit at 16 kHz."""
    n = int(16000 * seconds)
    t = np.arange(n) / 16000
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.7 * t)) / 2 + 0.05 * rng.standard_normal(n)
    sf.write(path, np.clip(wave, -1, 1), 16000, subtype="PCM_16")


# spec[0, 0, 0], spec[0, 100, 50], spec[0, 256, 199] and the mean of the official [1, 257, 200] input
SPECTROGRAMS = {"short": (7.3, 10.0, [-1.3107752, -1.1488107, -1.2715336], -1.2369884),   # tiled, then rolled
                "exact": (10.0, 10.0, [-1.2929296, -1.3015635, -1.2919412], -1.2369341),
                "long": (12.0, 10.0, [-1.2860881, -1.3211758, -1.2808915], -1.2369395),    # first 10 s, rolled
                "s4": (5.0, 5.0, [-1.3286345, -1.1226790, -1.2702855], -1.2370362)}


def test_spectrogram_and_image_inputs_equal_the_official_loader(tmp_path):
    rng = np.random.default_rng(7)
    inputs = SpectrogramInputs()
    for name, (seconds, dur, at, mean) in SPECTROGRAMS.items():
        path = tmp_path / f"{name}.wav"
        _tone(path, seconds, rng)
        x = inputs.audio(path, dur)
        assert x.shape == (1, 257, 200) and x.dtype == torch.float32
        assert [float(x[0, 0, 0]), float(x[0, 100, 50]), float(x[0, 256, 199])] == pytest.approx(at, abs=1e-6)
        assert float(x.mean()) == pytest.approx(mean, abs=1e-6)
    img = (rng.random((90, 160, 3)) * 255).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "frame.jpg", quality=95)
    x = inputs.image(tmp_path / "frame.jpg")
    assert x.shape == (3, 224, 224)
    assert [float(x[0, 0, 0]), float(x[1, 100, 57]), float(x[2, 223, 223])] == \
        pytest.approx([0.7202545, -0.1540820, 1.1051097], abs=1e-5)
    assert float(x.mean()) == pytest.approx(0.2153364, abs=1e-5)


# LVS / SSL-Align inputs: spec[0, 0, 0], spec[0, 100, 50], spec[0, 256, -1] and the mean of the official input
LVS_SPECTROGRAMS = {"short": (7.3, 10, [-1.3396780, -1.2536348, -1.3131536], -1.2371943),
                    "exact": (10.0, 10, [-1.3347243, -1.2204857, -1.3378577], -1.2370534),
                    "long": (12.0, 10, [-1.3198349, -1.2001663, -1.3421673], -1.2370894),
                    "stereo": (10.0, 10, [-1.3156745, -1.2828332, -1.3300093], -1.2371643),   # channel 0 only
                    "s4": (5.0, 5, [-1.3073615, -1.2579718, -1.2312804], -1.2371280)}


def test_lvs_inputs_equal_the_official_test_dataset(tmp_path):
    rng = np.random.default_rng(7)
    inputs = WindowInputs()
    for name, (seconds, length, at, mean) in LVS_SPECTROGRAMS.items():
        n = int(16000 * seconds)
        t = np.arange(n) / 16000
        wave = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 0.7 * t)) / 2 + 0.05 * rng.standard_normal(n)
        data = np.stack([wave, -0.5 * wave], 1) if name == "stereo" else wave
        sf.write(tmp_path / "clip.wav", np.clip(data, -1, 1), 16000, subtype="PCM_16")
        rng.random((90, 160, 3))                      # the official comparison drew a frame here
        x = inputs.audio(tmp_path / "clip.wav", float(length))
        assert x.shape == (1, 257, 299) and x.dtype == torch.float32     # 3 s at hop 159, no crop
        assert [float(x[0, 0, 0]), float(x[0, 100, 50]), float(x[0, 256, -1])] == pytest.approx(at, abs=1e-6)
        assert float(x.mean()) == pytest.approx(mean, abs=1e-6)
    # silence and noise are log-compressed here: log(1e-7) / 12 everywhere, and log-density noise
    assert torch.allclose(inputs.silence(10.0, "cpu"), torch.full((1, 1, 257, 299), float(np.log(1e-7)) / 12))
    noise = inputs.noise(3, [0, 5], 5.0, "cpu")
    assert noise.shape == (2, 1, 257, 299) and torch.equal(noise[1:], inputs.noise(3, [5], 10.0, "cpu"))
    # E[log chi-square(2) / 2] = log(2 / fs) - Euler's gamma for the one-sided density of white noise
    expect = (np.log(2 / 16000) - 0.5772) / 12
    assert float(noise[:, 0, 1:256].double().mean()) == pytest.approx(expect, abs=0.01)


def test_ssl_tie_inputs_equal_its_test_dataset(tmp_path):
    """vssl_eval's datasets/datasets_ssltie.py (e8ebbc9) cannot be imported on torchaudio 2.11 (it calls the removed
    set_audio_backend); its audio path, rebuilt from torchaudio's own transforms with its settings: channel 0,
    repeated to 10 s when shorter, cut, MelSpectrogram(n_fft 512, hop 239, 257 mels, normalized) -> AmplitudeToDB;
    silence = the mel of zeros, not in dB."""
    import torchaudio.transforms as T

    from eval.models.ssl_san import LogmelInputs
    rng = np.random.default_rng(3)
    inputs = LogmelInputs(224, silence_db=False, noise_db=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                   # torchaudio: 257 mels over 257 bins leave empty filters
        mel = T.MelSpectrogram(sample_rate=16000, n_fft=512, hop_length=239, n_mels=257, normalized=True)
    for seconds in (7.3, 10.0, 12.0):
        n = int(16000 * seconds)
        wave = 0.3 * np.sin(2 * np.pi * 440 * np.arange(n) / 16000) + 0.05 * rng.standard_normal(n)
        sf.write(tmp_path / "t.wav", np.clip(wave, -1, 1), 16000, subtype="PCM_16")
        x, _ = sf.read(tmp_path / "t.wav", dtype="float32", always_2d=True)
        samples = torch.from_numpy(x.T[0:1].copy())
        if samples.shape[1] < 160000:
            samples = samples.repeat(1, int(160000 / samples.shape[1]) + 1)
        ref = T.AmplitudeToDB()(mel(samples[:, :160000]))
        silence = mel(torch.zeros(1, 160000))
        got = inputs.audio(tmp_path / "t.wav", 10.0)
        assert got.shape == ref.shape == (1, 257, 670) and float((got - ref).abs().max()) < 1e-4     # dB
        assert torch.equal(inputs.silence(10.0, "cpu")[0], silence)


def test_negative_inputs_as_the_official_code_feeds_them():
    inputs = SpectrogramInputs()
    assert torch.equal(inputs.silence(10.0, "cpu"), torch.zeros(1, 1, 257, 200))   # spectrogram of zeros, no log
    noise = inputs.noise(3, [0, 5], 10.0, "cpu")
    assert noise.shape == (2, 1, 257, 200)
    assert torch.equal(noise[1:], inputs.noise(3, [5], 10.0, "cpu"))      # a sample's noise: (seed, index) only
    assert not torch.equal(noise[:1], inputs.noise(4, [0], 10.0, "cpu"))
    # not log-compressed: white N(0, 1) noise has the one-sided density 2 / fs = 1.25e-4 off DC and Nyquist,
    # over the official scale 12 (each cell is a chi-square(2)-like draw: the mean over 255 x 200 is within 2%)
    interior = noise[:, 0, 1:256].double()
    assert float(interior.mean()) == pytest.approx(2 / 16000 / 12, rel=0.02)
    assert float(noise.min()) >= 0.0
    assert noise_waveforms(3, [5], 100).shape == (1, 100)


def _official_file(tmp_path, name: str, wrapper: str = "model", prefix: str = "module.") -> tuple:
    net = foreign_network(name)
    state = golden_state(net.state_dict())
    blob = {prefix + k: v for k, v in state.items()}
    obj = {wrapper: blob, "epoch": 7} if wrapper else blob
    path = tmp_path / f"{name}_{wrapper or 'bare'}.pth"
    torch.save(obj, path)
    return path, state


@pytest.mark.parametrize("name", FAMILIES)
def test_released_checkpoint_formats_load_strictly(tmp_path, name):
    formats = (("model", "module."), ("state_dict", ""), ("model_state_dict", "module."), ("", ""))
    for wrapper, prefix in formats if name == "ezvsl" else formats[:1]:        # the unwrapping is shared
        path, state = _official_file(tmp_path, name, wrapper, prefix)
        loaded = read_weights(path, name)
        assert set(loaded) == set(state) and all(torch.equal(loaded[k], state[k]) for k in state)
        adapter = load_adapter(name, str(path), None)
        affine = (1.0, 0.0) if name in FOURTEEN else (0.5, 0.5)       # LVS's and SSL-TIE's A; the others' (A + 1) / 2
        assert adapter.name == name and (adapter.map_scale, adapter.map_shift) == affine
        loaded = adapter.net.state_dict()
        assert not adapter.net.training and all(torch.equal(loaded[k], state[k]) for k in state)
    # a key short, or another network's file: refused in one line
    path, state = _official_file(tmp_path, name)
    blob = torch.load(path, weights_only=True)
    blob["model"].pop("module.imgnet.conv1.weight")
    torch.save(blob, tmp_path / "short.pth")
    with pytest.raises(EvalError, match=r"short\.pth: not a .*Net state dict: 1 missing "
                                        r"\(e\.g\. imgnet\.conv1\.weight\)"):
        load_adapter(name, str(tmp_path / "short.pth"), None)
    other = "slavc" if name != "slavc" else "ezvsl"
    with pytest.raises(EvalError, match="not a .*Net state dict"):
        load_adapter(other, str(path), None)
    torch.save({"epoch": 3, "note": "no weights"}, tmp_path / "empty.pth")
    with pytest.raises(EvalError, match="no state dict of tensors found"):
        load_adapter(name, str(tmp_path / "empty.pth"), None)


class _Payload:
    """What a hostile checkpoint could hold: unpickling it would run a command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("name", FAMILIES)
def test_a_pickle_that_runs_code_is_refused_and_runs_nothing(tmp_path, name):
    marker = tmp_path / "ran"
    state = golden_state(foreign_network(name).state_dict())
    path = tmp_path / "evil.pth"                  # a real checkpoint, with the payload beside the weights
    torch.save({"model": state, "hook": _Payload(marker)}, path)
    with pytest.raises(EvalError, match=r"evil\.pth: refused: not a plain tensor checkpoint, nothing in it was run "
                                        r"\(torch\.load with weights_only=True: Trying to load unsupported "
                                        r"GLOBAL posix\.system whose module posix is blocked\.\)$"):
        load_adapter(name, str(path), None)
    assert not marker.exists()
    raw = tmp_path / "raw.pth"                    # a bare pickle of the payload
    with open(raw, "wb") as fh:
        pickle.dump({"model": _Payload(marker)}, fh)
    with pytest.raises(EvalError, match=r"raw\.pth: refused"):
        load_adapter(name, str(raw), None)
    assert not marker.exists()
    if name != "ezvsl":
        return                                    # the command line shares the loader: checked once
    # and from the command line: one line, nothing written, nothing run
    r = subprocess.run([sys.executable, "-m", "eval.convert", str(path), "--model", name, "--out",
                        str(tmp_path / "conv")], capture_output=True, text=True)
    assert r.returncode != 0 and r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1
    assert "weights_only set to `False`" not in r.stderr          # no advice to load it unsafely
    assert not marker.exists() and not (tmp_path / "conv").exists()


# how each method's released file holds its weights (vssl_eval's eval.py loads them so)
RELEASED = {"ssl_tie": ("state_dict", ""), "ezvsl": ("model", "module."), "fnac": ("model", "module."),
            "slavc": ("model", "module."), "lvs": ("model_state_dict", "module."), "ssl_align": ("model_state_dict", "")}


def test_every_family_runs_end_to_end_and_reports(tmp_path):
    data = make_vggss(tmp_path / "vggss")
    rows = []
    for name in FAMILIES:
        path, state = _official_file(tmp_path, name, *RELEASED[name])
        ckpt = path
        if name in ("ezvsl", "lvs"):              # through eval.convert's folder too
            ckpt = tmp_path / f"{name}_conv"
            assert convert_main([str(path), "--model", name, "--out", str(ckpt)]) == 0
            meta = json.loads((ckpt / "model.json").read_text())
            assert meta["model"] == name and meta["tensors"] == len(state) and len(meta["source_sha256"]) == 64
            with pytest.raises(EvalError, match="converted for --model"):
                read_weights(ckpt, "fnac")
        out = tmp_path / f"res_{name}"
        assert run_main(["--model", name, "--ckpt", str(ckpt), "--testset", "vggss", "--data", str(data), "--out",
                         str(out), "seeds=[1,2]", "num_workers=0", "device=cpu", "overlay_samples=2"]) == 0
        info = json.loads((out / "metrics.json").read_text())
        assert info["model"] == name and info["model_family"] == name and info["samples"] == 5
        rows.append(out)
        # the stored maps of sample 1 are the official ones (A, or Savl = (A + 1) / 2) of its own inputs
        store = zarr.open_group(str(out / "maps.zarr"), mode="r")
        adapter = load_adapter(name, str(path), None)
        inputs = adapter.inputs
        with torch.no_grad():
            v = adapter.net.encode_image(inputs.image(data / "frames" / "bbbbbbbbbbb_000030.jpg")[None])
            a = adapter.net.encode_audio(inputs.audio(data / "audio" / "bbbbbbbbbbb_000030.wav", 10.0)[None])
            silence = adapter.net.encode_audio(inputs.silence(10.0, "cpu"))
        official = (lambda c: c) if name in FOURTEEN else (lambda c: (c + 1) / 2)
        expect = official(torch.einsum("bchw,bc->bhw", v, a))
        assert np.allclose(np.asarray(store["pos"][1]), expect[0].numpy(), atol=1e-5)
        assert np.allclose(np.asarray(store["silence"][1]), official(torch.einsum("bchw,bc->bhw", v, silence))[0],
                           atol=1e-5)
    # rescoring without the model reproduces a foreign family's metrics (the copy also names the store it read)
    assert rescore_main([str(rows[0]), "--out", str(tmp_path / "rescored")]) == 0
    again = json.loads((tmp_path / "rescored" / "metrics.json").read_text())
    assert again.pop("store") == str(rows[0] / "maps.zarr")
    assert again == json.loads((rows[0] / "metrics.json").read_text())
    assert report_main([str(r) for r in rows] + ["--out", str(tmp_path / "report")]) == 0
    md = (tmp_path / "report" / "tables.md").read_text()
    assert all(f"| VGG-SS | {name} | 5/5 |" in md for name in FAMILIES)
    assert all((tmp_path / "report" / f"overlays_vggss_{name}.png").is_file() for name in FAMILIES)
    assert (tmp_path / "report" / "maxima.png").is_file()


def test_unknown_model_and_unconvertible_family(tmp_path):
    r = subprocess.run([sys.executable, "-m", "eval.run", "--model", "acl", "--ckpt", "x", "--testset", "vggss",
                        "--data", str(make_vggss(tmp_path / "v")), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True)
    assert r.returncode != 0 and "--model: unknown model 'acl'; choose one of ssl_san, ssl_tie, ezvsl, fnac, slavc, " \
        "lvs, ssl_align" in r.stderr
    assert not (tmp_path / "o").exists()
    with pytest.raises(EvalError, match="cannot be converted \\(its checkpoints are already safetensors"):
        convert_main([str(tmp_path / "x.pth"), "--model", "ssl_san", "--out", str(tmp_path / "c")])
