"""pipeline.loaders on shards made by pipeline.shard (the `shard_dir` fixture): DALI (CPU) / reference parity,
distributed plans, mid-epoch resume, augmentation statistics, and bad shards (clear error or counted skip)."""
import json
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest
import torch

from pipeline.load import augment, features
from pipeline.load.build import build_loader
from pipeline.load.contract import LoaderConfig
from pipeline.load.shards import ShardSet
from pipeline.shard.format import ShardError

STD = torch.tensor(features.IMAGENET_STD).view(1, 3, 1, 1)
MEAN = torch.tensor(features.IMAGENET_MEAN).view(1, 3, 1, 1)
WDS2IDX = str(Path(sys.executable).with_name("wds2idx"))


# the two placements of the DALI loader's per-sample work (pipeline.load.dali.full_graph) and the reference loader
VARIANTS = {"dali": dict(backend="dali", dali_graph="decode"), "dali-full": dict(backend="dali", dali_graph="full"),
            "reference": dict(backend="reference")}


def grey_levels(image: torch.Tensor) -> torch.Tensor:
    return (image * STD + MEAN) * 255.0


def epoch(loader):
    return [b for b in loader]


def cat(batches, name):
    return torch.cat([getattr(b, name) for b in batches])


@pytest.mark.parametrize("graph", ["decode", "full"])
@pytest.mark.parametrize("size,seconds", [(224, 10.0), (112, 5.0)])
def test_dali_cpu_and_reference_give_the_same_tensors(shard_dir, size, seconds, graph):
    # the fixture's clips are 2 s, shorter than the window: both loaders tile them (DALI: features.mel_power when
    # decoding only, the graph's doublings when it runs everything)
    cfg = LoaderConfig(batch_size=4, image_size=size, clip_seconds=seconds, window_seconds=seconds, workers=2,
                       dali_graph=graph)
    dali = epoch(build_loader(cfg, shard_dir, split="train", train=False, seed=3))
    cfg.backend = "reference"
    ref = epoch(build_loader(cfg, shard_dir, split="train", train=False, seed=3))
    keys = [k for b in ref for k in b.key]
    assert [k for b in dali for k in b.key] == keys
    manifest = json.loads((shard_dir / "manifest.json").read_text())
    assert len(keys) == len(set(keys)) == manifest["splits"]["train"]["count"]
    assert torch.equal(cat(dali, "label"), cat(ref, "label"))
    img_d, img_r = cat(dali, "image"), cat(ref, "image")
    assert img_d.shape == (len(keys), 3, size, size)
    # both resize with augment.eval_transform; the JPEG decoders (DALI's, torchvision's) may round differently
    assert float((grey_levels(img_d) - grey_levels(img_r)).abs().max()) <= 2.0
    mel_d, mel_r = cat(dali, "logmel"), cat(ref, "logmel")
    assert mel_d.shape == (len(keys), 1, 257, features.num_frames(int(seconds * 16000)))
    # float32 FFT rounding differs between DALI and torch; it reaches 1e-3 dB only in cells more than 60 dB below
    # their frame's loudest mel bin (torch float32 itself is 0.08 dB off a float64 STFT there)
    near = mel_r >= mel_r.amax(dim=2, keepdim=True) - 60.0
    diff = (mel_d - mel_r).abs()
    assert float(diff[near].max()) <= 1e-3
    assert float(diff.max()) <= 0.5


@pytest.mark.parametrize("backend", list(VARIANTS))
def test_ranks_epochs_equal_steps_and_disjoint_data(shard_dir, backend):
    cfg = LoaderConfig(**VARIANTS[backend], batch_size=3, image_size=32, clip_seconds=1.0, window_seconds=1.0,
                       workers=1, shuffle_buffer=4)
    shards = ShardSet.open(shard_dir, "train")
    seen = {}
    for e in range(2):
        per_rank = []
        for rank in range(2):
            ld = build_loader(cfg, shard_dir, split="train", train=True, rank=rank, world_size=2, seed=11)
            ld.set_epoch(e)
            batches = epoch(ld)
            assert len(batches) == len(ld) == shards.plan(1 - rank, 2, e, 3, True).num_batches
            assert all(len(b.key) == 3 for b in batches)
            per_rank.append([k for b in batches for k in b.key])
        assert not set(per_rank[0]) & set(per_rank[1])
        seen[e] = per_rank
    assert set(seen[0][0]) != set(seen[1][0])      # rank 0 reads the other range in epoch 1

    def order(epoch_, seed):
        ld = build_loader(cfg, shard_dir, split="train", train=True, seed=seed)
        ld.set_epoch(epoch_)
        return [k for b in ld for k in b.key]
    assert order(0, 11) == order(0, 11)             # a seed fixes the shuffle...
    assert order(0, 11) != order(1, 11)             # ...and each epoch draws a new one


@pytest.mark.parametrize("backend", list(VARIANTS))
def test_resume_mid_epoch_reproduces_the_rest(shard_dir, backend):
    cfg = LoaderConfig(**VARIANTS[backend], batch_size=3, image_size=48, clip_seconds=2.0, window_seconds=1.0,
                       audio_window="random", workers=2, shuffle_buffer=6)
    full = epoch(build_loader(cfg, shard_dir, split="train", train=True, seed=5))
    assert len(full) >= 3
    first = build_loader(cfg, shard_dir, split="train", train=True, seed=5)
    it = iter(first)
    next(it)
    state = json.loads(json.dumps(first.state_dict()))     # survives a JSON round trip (checkpoint files)
    resumed = build_loader(cfg, shard_dir, split="train", train=True, seed=5)
    resumed.load_state_dict(state)
    rest = epoch(resumed)
    assert len(rest) == len(full) - 1
    for a, b in zip(full[1:], rest):
        assert a.key == b.key
        for name in ("image", "logmel", "label"):
            assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert resumed.epoch == 1 and resumed.consumed == 0


@pytest.mark.parametrize("backend", list(VARIANTS))
def test_train_augmentation_statistics(shard_dir, backend):
    cfg = LoaderConfig(**VARIANTS[backend], batch_size=4, image_size=40, clip_seconds=2.0, window_seconds=1.0,
                       workers=2)
    ld = build_loader(cfg, shard_dir, split="train", train=True, seed=2)
    plain = {k: img for b in build_loader(cfg, shard_dir, split="train", train=False, seed=2)
             for k, img in zip(b.key, grey_levels(b.image))}
    gray = n = changed = e = 0
    while n < 80:
        ld.set_epoch(e)
        for step, b in enumerate(ld):
            masks = features.spec_augment_params(len(b.key), b.logmel.shape[-1],
                                                 features.position_generator(2, e, 0, step))
            for i, (ts, tw, fs, fw) in enumerate(masks.tolist()):   # SpecAugment cells read -100 dB
                assert torch.all(b.logmel[i, 0, :, ts:ts + tw] == -100.0)
                assert torch.all(b.logmel[i, 0, fs:fs + fw, :] == -100.0)
            levels = grey_levels(b.image)
            for k, img in zip(b.key, levels):
                n += 1
                gray += bool((img[0] - img[1]).abs().max() < 1.5 and (img[1] - img[2]).abs().max() < 1.5)
                changed += bool((img - plain[k]).abs().mean() > 2.0)
        e += 1
    assert 0.05 < gray / n < 0.4              # RandomGrayscale p 0.2
    assert changed / n > 0.9                  # crops, jitter, flips move almost every image


def test_dali_image_draws_statistics(shard_dir):
    """The per-image draws of the DALI graph (augment.train_batch applies them): probabilities and ranges."""
    import numpy as np
    cfg = LoaderConfig(batch_size=8, image_size=32, clip_seconds=1.0, window_seconds=1.0, workers=1)
    ld = build_loader(cfg, shard_dir, split="train", train=True, seed=6)
    pipe = ld._pipeline(ld.plan(0), None)
    draws = np.concatenate([np.array(pipe.run()[4].as_tensor()) for _ in range(150)])  # copies; the reader wraps around
    assert draws.shape == (1200, augment.DRAWS)
    b, k, s, h, gray, sigma, flip = draws.T
    jitter = (b != 1) | (k != 1) | (s != 1) | (h != 0)
    for factor in (b, k, s):
        assert factor.min() >= 0.6 and factor.max() <= 1.4
    assert np.abs(h).max() <= 0.1 and set(np.unique(gray)) == set(np.unique(flip)) == {0.0, 1.0}
    assert sigma[sigma > 0].min() >= 0.1 and sigma.max() <= 2.0
    # 4.5 standard deviations either side at n 1200
    for p, drawn in ((0.8, jitter), (0.2, gray == 1), (0.5, sigma > 0), (0.5, flip == 1)):
        assert abs(drawn.mean() - p) < 4.5 * (p * (1 - p) / len(draws)) ** 0.5


def _copy_shards(shard_dir: Path, dest: Path) -> Path:
    out = dest / "shards"
    shutil.copytree(shard_dir, out)
    return out


def _drop_member(tar: Path, suffix: str) -> str:
    """Rewrite `tar` without the first member ending in `suffix`; return the key it belonged to."""
    tmp = tar.with_suffix(".tmp")
    dropped = None
    with tarfile.open(tar) as src, tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as dst:
        for m in src.getmembers():
            if dropped is None and m.name.endswith(suffix):
                dropped = m.name.split(".", 1)[0]
                continue
            dst.addfile(m, src.extractfile(m))
    tmp.replace(tar)
    subprocess.run([WDS2IDX, str(tar), str(tar.with_suffix(".idx"))], check=True, capture_output=True)
    return dropped


BAD_SHARD_SCRIPT = """
import sys
from pipeline.load.build import build_loader
from pipeline.load.contract import LoaderConfig
from pipeline.shard.format import ShardError
for backend in ("dali", "reference"):
    cfg = LoaderConfig(backend=backend, batch_size=2, image_size=32, clip_seconds=1.0, window_seconds=1.0, workers=1)
    try:
        ld = build_loader(cfg, sys.argv[1], split="train", train=False)
        keys = [k for b in ld for k in b.key]
        print(backend, "ok", ld.stats.skipped, ",".join(keys))
    except ShardError as exc:
        print(backend, "error", exc)
"""


def _run_bad(path: Path) -> list[str]:
    """Both backends in a child process with a time limit, so a hang fails the test instead of stalling it."""
    res = subprocess.run([sys.executable, "-c", BAD_SHARD_SCRIPT, str(path)], capture_output=True, text=True,
                         timeout=180, cwd=Path(__file__).resolve().parents[1])
    assert res.returncode == 0, res.stderr[-2000:]
    return [ln for ln in res.stdout.splitlines() if ln.startswith(("dali ", "reference "))]


def test_bad_shards_truncated_and_missing_audio(shard_dir, tmp_path):
    shards = _copy_shards(shard_dir, tmp_path / "a")
    tar = sorted(shards.glob("train-*.tar"))[0]
    gone = _drop_member(tar, ".wav")
    lines = _run_bad(shards)
    assert len(lines) == 2
    for ln in lines:
        backend, status, skipped, keys = ln.split(" ", 3)
        assert status == "ok" and skipped == "1" and gone not in keys.split(","), ln
    assert lines[0].split(" ")[3] == lines[1].split(" ")[3]

    truncated = _copy_shards(shard_dir, tmp_path / "b")
    tar = sorted(truncated.glob("train-*.tar"))[-1]
    data = tar.read_bytes()
    tar.write_bytes(data[: len(data) // 2])
    for ln in _run_bad(truncated):
        assert " error " in ln and tar.name in ln and "truncated" in ln, ln
    with pytest.raises(ShardError, match="missing DALI index"):
        tar.with_suffix(".idx").unlink()
        ShardSet.open(truncated, "train")
    with pytest.raises(ShardError, match="no train-"):
        ShardSet.open(tmp_path, "train")


def test_per_file_baseline_matches_the_reference_loader(shard_dir, tmp_path):
    from pipeline.bench.baseline import build_baseline, extract_clips
    cfg = LoaderConfig(backend="reference", batch_size=4, image_size=64, clip_seconds=2.0, window_seconds=2.0,
                       workers=1)
    ref = {k: (img, mel) for b in build_loader(cfg, shard_dir, split="train", train=False)
           for k, img, mel in zip(b.key, b.image, b.logmel)}
    items = extract_clips(ShardSet.open(shard_dir, "train"), tmp_path / "clips", progress=False)
    assert sorted(k for k, _ in items) == sorted(ref)
    base = build_baseline(tmp_path / "clips", items, batch_size=4, image_size=64, train=False, window_seconds=2.0,
                          clip_seconds=2.0, audio_window="center", workers=1)
    keys = [k for k, _ in items]
    images, mels = torch.cat([b[0] for b in base]), torch.cat([b[1] for b in base])
    for i, key in enumerate(keys):
        assert float((grey_levels(images[i:i + 1]) - grey_levels(ref[key][0][None])).abs().max()) <= 2.0
        assert float((mels[i] - ref[key][1]).abs().max()) <= 1e-3


def test_bench_load_cli(shard_dir, tmp_path, capsys):
    from pipeline.bench.cli import main
    from pipeline.common.cli import run_cli
    out = tmp_path / "bench"
    rc = run_cli(main, ["load", "--shards", str(shard_dir), "--out", str(out), "--epochs", "2", "warmup=0",
               "loader.batch_size=2", "loader.image_size=32", "loader.clip_seconds=1", "loader.window_seconds=1",
               "loader.workers=1"])
    assert rc == 0
    report = json.loads((out / "load.json").read_text())
    assert set(report["results"]) == {"dali", "reference", "baseline"}
    for r in report["results"].values():
        assert len(r["epoch_rates"]) == 2 and r["median_samples_per_s"] > 0 and r["samples_per_epoch"] > 0
        assert r["median_s_to_first_batch"] > 0
    assert report["dali_over_baseline"] > 0 and report["baseline_cpu_over_dali_cpu"] > 0
    assert (out / "config.yaml").is_file()
    capsys.readouterr()
    assert run_cli(main, ["load", "--shards", str(tmp_path / "none"), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "none" in err[0]


def _gradient_shards(out: Path, n: int = 8) -> Path:
    """A tar of `n` clips whose frame is a grey ramp, dark on the left: any crop keeps left darker than right, colour
    jitter, grayscale and blur keep that order, so only a horizontal flip reverses it."""
    import io

    import numpy as np
    import soundfile as sf
    import webdataset as wds
    from PIL import Image
    out.mkdir(parents=True)
    ramp = np.repeat(np.linspace(20, 235, 96)[None, :, None], 64, axis=0).repeat(3, axis=2).astype(np.uint8)
    rng = np.random.default_rng(0)
    with wds.TarWriter(str(out / "train-000000.tar")) as w:
        for i in range(n):
            jpg, flac = io.BytesIO(), io.BytesIO()
            Image.fromarray(ramp).save(jpg, format="JPEG", quality=95)
            sf.write(flac, (0.1 * rng.standard_normal(16000)).astype(np.float32), 16000, format="FLAC")
            key = f"ramp{i:07d}_000000"
            meta = {"id": key, "class_index": i % 2}
            w.write({"__key__": key, "jpg": jpg.getvalue(), "flac": flac.getvalue(),
                     "json": json.dumps(meta).encode(), "cls": str(i % 2).encode()})
    subprocess.run([WDS2IDX, str(out / "train-000000.tar"), str(out / "train-000000.idx")], check=True,
                   capture_output=True)
    return out


@pytest.mark.parametrize("backend", list(VARIANTS))
def test_horizontal_flip_probability(tmp_path, backend):
    shards = _gradient_shards(tmp_path / "ramp")
    cfg = LoaderConfig(**VARIANTS[backend], batch_size=8, image_size=24, clip_seconds=1.0, window_seconds=1.0,
                       workers=1, shuffle_buffer=8)
    ld = build_loader(cfg, shards, split="train", train=True, seed=4)
    flipped = n = 0
    for e in range(16):
        ld.set_epoch(e)
        for b in ld:
            levels = grey_levels(b.image).mean(dim=(1, 2))          # [B, W]
            flipped += int((levels[:, :12].mean(1) > levels[:, 12:].mean(1)).sum())
            n += len(b.key)
    assert n == 128 and 0.35 < flipped / n < 0.65                    # p 0.5: 3.4 standard deviations either side
    plain = grey_levels(next(iter(build_loader(cfg, shards, split="train", train=False))).image).mean(dim=(1, 2))
    assert torch.all(plain[:, :12].mean(1) < plain[:, 12:].mean(1))  # the detector: never flipped without augment


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_bench_counts_the_cpu_of_forkserver_workers():
    from pipeline.bench import load as bench_load
    from pipeline.common import procs
    ctx = procs.forkserver_context()
    warm = ctx.Process(target=_spin, args=(0.0,))   # starts the server
    warm.start()
    warm.join()
    before = bench_load._cpu_seconds()
    p = ctx.Process(target=_spin, args=(0.4,))
    p.start()
    p.join()
    time.sleep(0.2)                                   # the server reaps its child
    assert bench_load._cpu_seconds() - before >= 0.3
