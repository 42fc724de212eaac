"""The GPU path, checked on the CPU where the CPU can check it (the `gpu` tier, tests/test_gpu.py, runs it on a GPU):
- launch-bound code: the torch ops that the GPU branch of the DALI loader's torch side (`dali.full_tensors` +
  SpecAugment) and one training step dispatch, counted with a TorchDispatchMode at two batch sizes, must not grow
  with the batch size, and none of them may read device data on the host (`.item()`, `bool(tensor)`, `nonzero`,
  boolean-mask indexing: each one waits for a GPU);
- the DALI graph's audio tiling against the shards' audio floor (manifest `min_duration`), and the one switch
  between the two placements of the per-sample work."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from pipeline.load import augment, features
from pipeline.load.build import build_loader
from pipeline.load.contract import LoaderConfig
from pipeline.load.dali import full_graph, full_tensors, tile_doublings
from pipeline.shard.format import ShardError

# ops that make the host wait for the device's data (on a CPU tensor they are free, so the CPU counts them)
SYNC_OPS = {"aten._local_scalar_dense.default", "aten.nonzero.default", "aten.masked_select.default",
            "aten.index.Tensor_bool", "aten.is_nonzero.default", "aten.equal.default"}


class OpCount(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))


def _outputs(batch: int, size: int, frames: int, train: bool, seed: int = 0) -> dict:
    """What the full DALI graph hands the torch side for a batch (json padded with zeros to one length)."""
    g = torch.Generator().manual_seed(seed)
    metas = [json.dumps({"id": f"clip{i:04d}", "class_index": i % 3}).encode() for i in range(batch)]
    width = max(len(m) for m in metas)
    js = torch.tensor(np.stack([np.frombuffer(m.ljust(width, b"\0"), np.uint8) for m in metas]))
    if train:
        image = torch.randint(0, 256, (batch, size, size, 3), generator=g, dtype=torch.uint8)
    else:   # decoded frames of two sizes, as a video dataset has a few
        image = [torch.randint(0, 256, (40 + 8 * (i % 2), 56, 3), generator=g, dtype=torch.uint8)
                 for i in range(batch)]
    draws = torch.rand(batch, augment.DRAWS, generator=g)
    draws[:, 5] = torch.where(draws[:, 5] > 0.5, draws[:, 5] * 2, torch.zeros(()))   # half blurred, half not
    return {"image": image, "audio": torch.rand(batch, 257, frames, generator=g), "json": js, "draws": draws}


def _loader_side(out: dict, train: bool) -> list[str]:
    full_tensors(out, train, 32, torch.device("cpu"))     # first call: the per-device constants are made
    with OpCount() as count:
        image, mel, metas = full_tensors(out, train, 32, torch.device("cpu"))
        if train:
            features.spec_augment(mel, features.position_generator(1, 0, 0, 0), inplace=True, fill=features.DB_FLOOR,
                                  batched=True)   # what a GPU tensor takes
    assert image.shape == (len(metas), 3, 32, 32) and mel.shape == (len(metas), 1, 257, out["audio"].shape[-1])
    return count.ops


@pytest.mark.parametrize("train", [True, False])
def test_the_gpu_branch_of_the_loader_dispatches_the_same_ops_at_any_batch_size(train):
    small, large = (_loader_side(_outputs(b, 32, 40, train), train) for b in (4, 16))
    assert len(small) == len(large) and small == large
    assert not SYNC_OPS & set(large), sorted(SYNC_OPS & set(large))
    assert len(large) < 400                                  # a fixed budget: ~20 per sample at 16 would exceed it


def test_the_full_graphs_torch_side_computes_the_reference_transforms():
    out = _outputs(3, 32, 40, train=True)
    image, mel, metas = full_tensors(out, True, 32, torch.device("cpu"))
    assert [m["id"] for m in metas] == ["clip0000", "clip0001", "clip0002"]
    nchw = out["image"].permute(0, 3, 1, 2)
    expect = torch.cat([augment.blur_jitter_normalize(nchw[i:i + 1], out["draws"][i:i + 1, :6], chunk=1)
                        for i in range(3)])                    # one image at a time, the CPU branch
    assert torch.allclose(image, expect, atol=1e-4)
    assert torch.allclose(mel[:, 0], features.to_db(features.power_to_mel(out["audio"])), atol=1e-5)
    evals = _outputs(3, 32, 40, train=False)
    image, _, _ = full_tensors(evals, False, 32, torch.device("cpu"))
    for i, frame in enumerate(evals["image"]):                 # frames of two sizes, back in the batch's order
        ref = augment.eval_transform(32)(frame.permute(2, 0, 1))
        assert torch.equal(image[i], ref.as_subclass(torch.Tensor))   # the reference's transform, bit for bit


def _step_ops(batch: int, tmp_path: Path) -> list[str]:
    from pipeline.common.config import load_config
    from trainer.config import TrainConfig
    from trainer.train import Trainer
    cfg = load_config(TrainConfig, None, [
        "data.source=random", "data.random_image_size=32", "data.random_frames=32", "model.width=4",
        f"optim.batch_size={batch}", "optim.grad_clip=1.0", f"output_root={tmp_path}", f"name=b{batch}",
        "val_every=0", "ckpt_every=0"])
    trainer = Trainer(cfg, resume="none")
    try:
        batches = iter(trainer.train_loader)
        trainer._optimizer_step([next(batches)])               # first step: lazy state (Adam moments) is made
        micro = [next(batches)]
        with OpCount() as count:
            trainer._optimizer_step(micro)
            trainer._stop_requested()
    finally:
        trainer.close()
    return count.ops


def test_one_training_step_dispatches_the_same_ops_at_any_batch_size(tmp_path, monkeypatch):
    monkeypatch.setattr(features, "CPU_CHUNK", 10**6)          # the log-mel of the noise in one pass, as on a GPU
    small, large = _step_ops(2, tmp_path), _step_ops(6, tmp_path)
    assert len(small) == len(large) and small == large
    # the CPU generator's draws (equivariance angles) are read on the host by design; nothing else may be
    assert not SYNC_OPS & set(large), sorted(SYNC_OPS & set(large))
    assert len(large) > 500                                   # the count saw the whole step (forward + backward + Adam)


def test_tile_doublings():
    assert tile_doublings(160000, 48000) == 2                 # a 3 s window tiled to 10 s: 4 copies, cut
    assert tile_doublings(160000, 160000) == 0
    assert tile_doublings(160000, 1) == 18 and tile_doublings(16000, 16000 - 1) == 1


def test_full_graph_switch():
    cfg = LoaderConfig()
    assert not full_graph(cfg, gpu=False) and full_graph(cfg, gpu=True)
    assert full_graph(LoaderConfig(dali_graph="full"), gpu=False)
    assert not full_graph(LoaderConfig(dali_graph="decode"), gpu=True)
    with pytest.raises(ValueError, match="dali_graph"):
        full_graph(LoaderConfig(dali_graph="gpu"), gpu=False)


def _eval_tensors(shards: Path, graph: str, backend: str = "dali"):
    cfg = LoaderConfig(backend=backend, dali_graph=graph, batch_size=4, image_size=32, clip_seconds=3.0,
                       window_seconds=3.0, workers=1)
    batches = list(build_loader(cfg, shards, split="train", train=False))
    return torch.cat([b.logmel for b in batches]), [k for b in batches for k in b.key]


def test_full_graph_tiles_by_the_manifests_audio_floor(shard_dir, tmp_path):
    # the fixture's clips are 2 s (min_duration 1.5): a 3 s input is the clip tiled 1.5 times
    ref, keys = _eval_tensors(shard_dir, "auto", backend="reference")
    full, full_keys = _eval_tensors(shard_dir, "full")
    near = ref >= ref.amax(dim=2, keepdim=True) - 60.0
    assert full_keys == keys and float((full - ref).abs()[near].max()) <= 1e-3

    older = tmp_path / "older"                               # a manifest without min_duration: the 1-sample floor
    shutil.copytree(shard_dir, older)
    manifest = json.loads((older / "manifest.json").read_text())
    del manifest["min_duration"]
    (older / "manifest.json").write_text(json.dumps(manifest))
    assert torch.equal(_eval_tensors(older, "full")[0], full)

    lying = tmp_path / "lying"                               # a manifest promising more audio than the clips have
    shutil.copytree(shard_dir, lying)
    manifest["min_duration"] = 2.9
    (lying / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ShardError, match=r"lying: a sample has \d+ audio samples, fewer than the 46240"):
        _eval_tensors(lying, "full")


def test_bench_load_runs_one_backend_on_two_devices():
    from pipeline.bench.load import _parse_loader
    from pipeline.common.config import ConfigError
    assert _parse_loader("dali", "cuda") == ("dali", "cuda") and _parse_loader("dali:cpu", "cuda") == ("dali", "cpu")
    for bad in ("dali:tpu", "baseline:cuda", "fast"):
        with pytest.raises(ConfigError, match="unknown loader"):
            _parse_loader(bad, "cpu")


def test_gpu_check_refuses_a_machine_without_a_gpu(tmp_path):
    import subprocess
    import sys
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "scripts" / "gpu_check.py"), "--out", str(tmp_path / "g")],
                       capture_output=True, text=True, timeout=120, env={"CUDA_VISIBLE_DEVICES": "", "PATH": ""})
    assert r.returncode == 2 and r.stderr.strip() == "error: gpu-check: no CUDA device is visible to torch"
    assert not (tmp_path / "g").exists()
    from importlib import util
    spec = util.spec_from_file_location("gpu_check", root / "scripts" / "gpu_check.py")
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    pins = module.pins()   # what it installs: the project's pins, the gpu extra, pytest
    assert "nvidia-dali-cuda130==2.4.0" in pins and any(p.startswith("cuda-toolkit") for p in pins)
    assert any(p.startswith("pytest==") for p in pins) and "torch==2.11.0" in pins
