"""The GPU tier (`pytest -m gpu`, run by `make gpu-check`): the GPU path on a real GPU. Skipped, with the reason,
where CUDA is absent; excluded from the default run.

- the DALI GPU loader (`device: cuda`, the full graph) against the reference loader on the session's shards:
  evaluation tensors equal (log-mel within 1e-3 dB, images within 2 grey levels), training batches statistically
  equivalent, and its torch side free of host-device synchronisation (`torch.cuda.set_sync_debug_mode('error')`);
- one training step on the GPU free of synchronisation, and its op count flat in the batch size;
- a short bf16 + channels_last + compiled training on the shards through the DALI GPU loader: finite, decreasing
  loss, no recompilation after the first step, a checkpoint that resumes;
- `eval.run` on the GPU gives the CPU's maps within 1e-4;
- DDP through `accelerate launch --num_processes 1` on the GPU."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device: the gpu tier needs one")]

ROOT = Path(__file__).resolve().parents[1]
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)


def _grey(x):
    return (x.cpu() * STD + MEAN) * 255.0


def _cat(batches, name):
    return torch.cat([getattr(b, name).cpu() for b in batches])


def test_dali_gpu_loader_equals_the_reference_loader(shard_dir):
    from pipeline.load.build import build_loader
    from pipeline.load.contract import LoaderConfig
    cfg = LoaderConfig(device="cuda", batch_size=4, image_size=112, clip_seconds=5.0, window_seconds=5.0, workers=2)
    gpu = list(build_loader(cfg, shard_dir, split="train", train=False, seed=3))
    assert gpu[0].image.is_cuda and gpu[0].logmel.is_cuda
    ref = list(build_loader(LoaderConfig(backend="reference", batch_size=4, image_size=112, clip_seconds=5.0,
                                         window_seconds=5.0, workers=2), shard_dir, split="train", train=False, seed=3))
    assert [k for b in gpu for k in b.key] == [k for b in ref for k in b.key]
    assert torch.equal(_cat(gpu, "label"), _cat(ref, "label"))
    assert float((_grey(_cat(gpu, "image")) - _grey(_cat(ref, "image"))).abs().max()) <= 2.0
    mel_g, mel_r = _cat(gpu, "logmel"), _cat(ref, "logmel")
    near = mel_r >= mel_r.amax(dim=2, keepdim=True) - 60.0
    assert float((mel_g - mel_r).abs()[near].max()) <= 1e-3


def test_dali_gpu_training_batches_are_statistically_equivalent(shard_dir):
    from pipeline.load.build import build_loader
    from pipeline.load.contract import LoaderConfig
    stats = {}
    for backend, device in (("dali", "cuda"), ("reference", "cpu")):
        cfg = LoaderConfig(backend=backend, device=device, batch_size=4, image_size=64, clip_seconds=2.0,
                           window_seconds=1.0, workers=2)
        ld = build_loader(cfg, shard_dir, split="train", train=True, seed=2)
        images, mels = [], []
        for e in range(8):
            ld.set_epoch(e)
            for b in ld:
                images.append(_grey(b.image))
                mels.append(b.logmel.cpu())
        img, mel = torch.cat(images), torch.cat(mels)
        grey = ((img[:, 0] - img[:, 1]).abs().amax((1, 2)) < 1.5).float().mean()
        stats[backend] = (float(img.mean()), float(img.std()), float(grey), float((mel == -100.0).float().mean()))
    (m_d, s_d, g_d, masked_d), (m_r, s_r, g_r, masked_r) = stats["dali"], stats["reference"]
    assert abs(m_d - m_r) < 6.0 and abs(s_d - s_r) < 6.0         # grey levels over ~50 augmented images
    assert 0.05 < g_d < 0.4 and 0.05 < g_r < 0.4                  # RandomGrayscale p 0.2 in both
    assert abs(masked_d - masked_r) < 0.1                          # the same SpecAugment


def test_the_loader_and_a_training_step_never_wait_for_the_gpu(tmp_path):
    from pipeline.common.config import load_config
    from pipeline.load import features
    from pipeline.load.dali import full_tensors
    from trainer.config import TrainConfig
    from trainer.train import Trainer
    sys.path.insert(0, str(ROOT / "tests"))
    from test_gpu_path import OpCount, _outputs
    dev = torch.device("cuda")
    out = _outputs(16, 64, 100, train=True)
    out = {k: (v.to(dev) if k in ("image", "audio", "draws") else v) for k, v in out.items()}
    full_tensors(out, True, 64, dev)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        _, mel, _ = full_tensors(out, True, 64, dev)
        features.spec_augment(mel, features.position_generator(1, 0, 0, 0), inplace=True, fill=features.DB_FLOOR)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    counts = []
    for batch in (8, 32):
        cfg = load_config(TrainConfig, None, [
            "data.source=random", "data.random_image_size=64", "data.random_frames=64", "model.width=16",
            f"optim.batch_size={batch}", "optim.grad_clip=1.0", "precision=bf16", "channels_last=true",
            f"output_root={tmp_path}", f"name=b{batch}", "val_every=0", "ckpt_every=0"])
        trainer = Trainer(cfg, resume="none")
        try:
            from trainer.data import DevicePrefetch
            batches = iter(DevicePrefetch(trainer.train_loader, trainer.device))
            trainer._optimizer_step([next(batches)])
            micro = [next(batches)]
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                with OpCount() as count:
                    trainer._optimizer_step(micro)
                    trainer._stop_requested()
            finally:
                torch.cuda.set_sync_debug_mode("default")
            counts.append(count.ops)
        finally:
            trainer.close()
    assert counts[0] == counts[1]


def _records(run_dir):
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def _train(args, launch=None, timeout=600):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = (launch or [sys.executable]) + [str(ROOT / "trainer" / "train.py"), *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def test_compiled_bf16_training_on_the_dali_gpu_loader_then_resume(shard_dir, synth_corpus, tmp_path):
    common = [f"output_root={tmp_path}", f"data.shard_dir={shard_dir}",
              f"data.synth_json={synth_corpus / 'synth.json'}",
              "model.width=16", "optim.batch_size=4", "optim.lr=1e-3", "data.loader.device=cuda",
              "data.loader.image_size=96", "data.loader.clip_seconds=2.0", "data.loader.window_seconds=1.0",
              "data.loader.workers=2", "precision=bf16", "channels_last=true", "compile=true", "log_every=1",
              "val_every=0", "ckpt_every=0", "val_batches=1", "epochs=100"]
    r = _train(["--resume", "none", "name=gpu", "max_steps=24", *common])
    assert r.returncode == 0, r.stderr[-3000:]
    train = [x for x in _records(tmp_path / "gpu") if "train/loss" in x]
    losses = [x["train/loss"] for x in train]
    assert len(losses) == 24 and all(np.isfinite(losses))
    assert np.mean(losses[-6:]) < np.mean(losses[:6])                         # it learns
    assert train[0]["compiles"] > 0 and all(x["compiles"] == 0 for x in train[2:])   # compiled once, no recompile
    assert all(x["step_s"] > 0 and x["data_wait_s"] >= 0 for x in train)
    more = _train(["--resume", "auto", "name=gpu", "max_steps=26", *common])
    assert more.returncode == 0, more.stderr[-3000:]
    assert "resumed from" in more.stdout + more.stderr
    assert [x["step"] for x in _records(tmp_path / "gpu") if "train/loss" in x][-2:] == [25, 26]


def test_accelerate_launch_one_process_on_the_gpu(tmp_path):
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
              "--mixed_precision", "bf16", "--dynamo_backend", "no"]
    r = _train(["--resume", "none", f"output_root={tmp_path}", "name=ddp", "data.source=random",
                "data.random_image_size=64", "data.random_frames=64", "model.width=8", "optim.batch_size=8",
                "precision=bf16", "max_steps=3", "log_every=1", "val_every=0", "ckpt_every=0"], launch=launch)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "device cuda" in r.stdout + r.stderr
    assert (tmp_path / "ddp/checkpoints/step_00000003/state.json").is_file()


def test_eval_run_on_the_gpu_equals_the_cpu(synth_corpus, tmp_path):
    from eval.run import main
    from eval.store import read_store
    sys.path.insert(0, str(ROOT / "tests"))
    from test_eval_run import _save_tiny_checkpoint
    ckpt = _save_tiny_checkpoint(tmp_path / "run")
    data = synth_corpus / "testsets" / "vggss"
    stores = {}
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        assert main(["--ckpt", str(ckpt), "--testset", "vggss", "--data", str(data), "--out", str(out),
                     "num_workers=1", f"device={device}"]) == 0
        stores[device] = read_store(out / "maps.zarr")
    for name in ("pos", "silence", "noise", "offscreen", "retrieval"):
        np.testing.assert_allclose(stores["cuda"][name], stores["cpu"][name], atol=1e-4, err_msg=name)
