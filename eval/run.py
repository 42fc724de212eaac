"""Evaluate a checkpoint on a test set: every positive and negative map into a zarr store, then the metrics.

`python -m eval.run [--model NAME] --ckpt CKPT --testset vggss|is3|is3plus|s4 --data DIR --out results/NAME [key=value]`

1. The test set is read and checked (`eval.testsets`); the model family's adapter is built (`eval.models`: ours through
   `trainer.checkpoint.load_model`, safetensors + YAML; other methods' released files only through
   `torch.load(weights_only=True)`: no code from a checkpoint runs). Either failing is a one-line error, nothing is
   written. The adapter gives the inputs (images, audio, silence and noise as that family's evaluation prepares
   them), the encoders and the map (the cosine, or the affine of it the family's official evaluation scores).
2. Audio pass: every sample's audio embedding a_i (batched, tqdm, GPU if present; a file shared by several samples,
   as S4's five frames share their video's wav, is encoded once).
3. Image pass, per batch: visual map v_i, then the maps at native resolution (14 x 14 for 224 px; 7 x 7 for the
   EZ-VSL family):
   pos = <v_i, a_i>; silence = <v_i, a_silence>; noise[s] = <v_i, a_noise(i, seed s)>; offscreen[s] = <v_i, a_j(s)>
   with j(s) drawn as REFERENCE.md D.6 says (`eval.offscreen`; the offscreen audio is processed exactly like a positive,
   so its embedding is a_j); per-sample maxima; embeddings (a_i, mean of v_i over pixels, v_i at the argmax of the
   positive map); the retrieval matrix max_p <v_i(p), a_j> over all pairs; the ground truth.
4. The store is marked complete, then the metrics are computed from the store (as `python -m eval.rescore` does) and
   written with the tables and figures (`eval.report`).
Everything is written into a staging folder beside OUT, which replaces OUT only when complete (a failed or
interrupted run leaves an earlier OUT as it was); OUT may hold only what eval.run writes, and one writer at a time
holds it (pipeline.common.outputs).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from eval.config import RESULT_FILES, EvalConfig
from eval.errors import EvalError
from eval.inputs import EvalInputs, batches, collate, load_rgb
from eval.models import MODELS, Adapter, load_adapter
from eval.offscreen import offscreen_choice
from eval.rescore import score_into
from eval.store import StoreWriter
from eval.testsets import TESTSETS, TestSet, read_testset
from pipeline.common.cli import Parser, run_cli
from pipeline.common.config import load_config, save_config, to_dict
from pipeline.common.outputs import replacing
from trainer.checkpoint import CheckpointError


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise EvalError("device=cuda but no GPU is available")
    if name not in ("cpu", "cuda"):
        raise EvalError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


def _loader(testset: TestSet, what: str, cfg: EvalConfig, seconds: float, inputs, indices=None) -> DataLoader:
    return DataLoader(EvalInputs(testset, what, seconds, inputs, indices), batch_size=cfg.batch_size,
                      shuffle=False, num_workers=cfg.num_workers, collate_fn=collate,
                      pin_memory=torch.cuda.is_available())


def overlay_indices(testset: TestSet, k: int) -> np.ndarray:
    """k samples spread evenly over the test set (always the first one)."""
    n = len(testset)
    return np.unique(np.linspace(0, n - 1, num=min(k, n)).round().astype(np.int64)) if k > 0 else np.zeros(0, np.int64)


@contextlib.contextmanager
def _tf32(enabled: bool):
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = enabled
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def evaluate(adapter: Adapter, testset: TestSet, cfg: EvalConfig, store_path: Path, attrs: dict) -> None:
    """Run the model on all positives and negatives of `testset` and write the complete store at `store_path`."""
    with _tf32(cfg.tf32), torch.inference_mode():
        _evaluate(adapter, testset, cfg, store_path, attrs)


def _evaluate(adapter: Adapter, testset: TestSet, cfg: EvalConfig, store_path: Path, attrs: dict) -> None:
    device = pick_device(cfg.device)
    model = adapter.net.to(device).eval()
    inputs, to_map = adapter.inputs, adapter.to_map
    seconds = cfg.audio_seconds or testset.audio_seconds
    seeds = [int(s) for s in cfg.seeds]
    if not seeds:
        raise EvalError("seeds: at least one evaluation pass is needed")
    off = offscreen_choice(testset, seeds)                                    # [S, N]
    n = len(testset)
    writer = StoreWriter(store_path, n, {**attrs, "seeds": seeds, "audio_seconds": seconds,
                                         "gt_kind": testset.gt_kind, "notes": testset.notes})
    writer.put("keys", testset.keys)
    writer.put("labels", testset.labels)
    writer.put("groups", [s.group for s in testset.samples])
    writer.put("offscreen_index", off)

    # each distinct audio file is encoded once (S4's five frames share one wav)
    first: dict = {}
    owner = torch.as_tensor([first.setdefault(s.audio, i) for i, s in enumerate(testset.samples)], device=device)
    audio_emb = None
    loader = _loader(testset, "audio", cfg, seconds, inputs, sorted(set(first.values())))
    for batch in tqdm(batches(loader), total=len(loader), desc=f"{testset.name} audio", unit="batch"):
        a = model.encode_audio(batch["audio"].to(device, non_blocking=True))
        if audio_emb is None:
            audio_emb = torch.empty((n, a.shape[1]), dtype=a.dtype, device=device)
        audio_emb[batch["index"].to(device)] = a
    audio_emb = audio_emb[owner]
    writer.put("emb_audio", audio_emb.cpu().numpy())
    a_silence = model.encode_audio(inputs.silence(seconds, device))

    loader = _loader(testset, "image", cfg, seconds, inputs)
    for batch in tqdm(batches(loader), total=len(loader), desc=f"{testset.name} images", unit="batch"):
        idx = batch["index"]
        start = int(idx[0])
        v = model.encode_image(batch["image"].to(device, non_blocking=True))     # [B, C, h, w]
        pos = to_map(torch.einsum("bchw,bc->bhw", v, audio_emb[idx.to(device)]))
        silence = to_map(torch.einsum("bchw,c->bhw", v, a_silence[0]))
        noise = to_map(torch.stack([
            torch.einsum("bchw,bc->bhw", v, model.encode_audio(inputs.noise(seed, idx.tolist(), seconds, device)))
            for seed in seeds], dim=1))                                           # [B, S, h, w]
        partner = torch.as_tensor(off[:, idx.numpy()].T, device=device)          # [B, S]
        offscreen = to_map(torch.einsum("bchw,bsc->bshw", v, audio_emb[partner]))
        retrieval = to_map(torch.cat([
            torch.einsum("bchw,kc->bkhw", v, audio_emb[k:k + cfg.retrieval_chunk]).amax((2, 3))
            for k in range(0, n, cfg.retrieval_chunk)], dim=1))
        flat = pos.flatten(1).argmax(1)
        peak = v.flatten(2)[torch.arange(len(idx), device=device), :, flat]
        rows = {"pos": pos, "silence": silence, "noise": noise, "offscreen": offscreen,
                "max_pos": pos.amax((1, 2)), "max_silence": silence.amax((1, 2)),
                "max_noise": noise.amax((2, 3)), "max_offscreen": offscreen.amax((2, 3)),
                "emb_image_mean": v.mean((2, 3)), "emb_image_peak": peak, "retrieval": retrieval}
        for name, value in rows.items():
            writer.put_rows(name, start, value.float().cpu().numpy())
        writer.put_rows("gt", start, batch["gt"].numpy().astype(np.uint8))

    keep = overlay_indices(testset, cfg.overlay_samples)
    writer.put("overlay_index", keep)
    writer.put("overlay_image", np.stack([
        (load_rgb(testset.samples[i].image, 224).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        for i in keep]) if len(keep) else np.zeros((0, 224, 224, 3), np.uint8))
    writer.finish()


def _one_line(exc: Exception, path: str) -> str:
    """The first line of an exception (with the next one when the first ends with ':'), naming `path`."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()] or [type(exc).__name__]
    msg = f"{lines[0]} {lines[1]}" if lines[0].endswith(":") and len(lines) > 1 else lines[0]
    return msg if str(path) in msg else f"{path}: {msg}"


def run(cfg: EvalConfig) -> Path:
    for key in ("ckpt", "testset", "data", "out"):
        if not getattr(cfg, key):
            raise EvalError(f"--{key} is required")
    if cfg.testset not in TESTSETS:
        raise EvalError(f"unknown test set {cfg.testset!r}; choose one of {list(TESTSETS)}")
    testset = read_testset(cfg.testset, cfg.data, gt=cfg.gt, subset=cfg.subset or None,
                           allow_missing=cfg.allow_missing)
    try:
        adapter = load_adapter(cfg.model, cfg.ckpt, cfg)
    except (CheckpointError, EvalError):
        raise                                  # already one line naming the file
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise EvalError(f"cannot load checkpoint: {_one_line(exc, cfg.ckpt)}") from None
    out = Path(cfg.out)
    if cfg.model == "ssl_san":                 # record the negatives' form the checkpoint was evaluated with
        cfg = dataclasses.replace(cfg, silence_db=adapter.inputs.silence_db, noise_db=adapter.inputs.noise_db)
    name = cfg.name or adapter.run_name
    attrs = {"testset": cfg.testset, "data": os.path.abspath(cfg.data), "checkpoint": os.path.abspath(cfg.ckpt),
             "model": name, "model_family": adapter.name, "train_seed": adapter.train_seed,
             "config": to_dict(cfg),
             "train_san": adapter.train_san}
    with replacing(out, RESULT_FILES) as stage:
        save_config(cfg, stage / "config.yaml")
        evaluate(adapter, testset, cfg, stage / "maps.zarr", attrs)
        score_into(stage, cfg, stage, store_beside=True)
    return out / "metrics.json"


def main(argv: list[str] | None = None) -> int:
    ap = Parser(prog="python -m eval.run",
                description=__doc__.split("\n\n")[0].replace("\n", " "))
    ap.add_argument("--config", help="YAML file of EvalConfig options")
    ap.add_argument("--model", help=f"model family: {', '.join(MODELS)} (default ssl_san: this project's "
                    "checkpoints; the others read their official .pth or an eval.convert folder)")
    for f in ("ckpt", "testset", "data", "out", "name"):
        ap.add_argument(f"--{f}")
    ap.add_argument("--subset", help="file of the sample (or image group) ids to score, one per line")
    ap.add_argument("--allow-missing", action="store_true", default=None,
                    help="score the samples whose files are on disk (default: refuse, counting the missing ones)")
    ap.add_argument("overrides", nargs="*", help="key=value options of EvalConfig")
    args = ap.parse_intermixed_args(argv)
    cfg = load_config(EvalConfig, args.config, args.overrides)
    names = ("model", "ckpt", "testset", "data", "out", "name", "subset", "allow_missing")
    flags = {f: getattr(args, f) for f in names if getattr(args, f) is not None}
    path = run(dataclasses.replace(cfg, **flags))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
