"""Training throughput of the real step (`Objective`: two image views, audio + silence + noise, Adam) on random
tensors: `python -m trainer.bench [--config FILE] [--batch 32] [--precision bf16] [--channels-last] [--compile]`.

Measures samples/s over `--steps` timed optimizer steps after `--warmup` untimed ones, on CUDA when available, else
the CPU. Unless `--no-baseline`, the SSL-TIE-style loop is measured beside it: fp32, eager, contiguous tensors and
the audio encoded once per view (SSL-TIE's code calls the whole model on each view), Adam unfused. Data loading is
not included (`python -m pipeline.bench load` measures the loaders). Prints a table and, with `--json`, writes the rows.
"""
from __future__ import annotations

import dataclasses
import sys
import time

import torch

from pipeline.common.atomic import atomic_write_json
from pipeline.common.cli import Parser, run_cli
from pipeline.common.config import load_config
from trainer.config import TrainConfig
from trainer.equivariance import draw_transform
from trainer.model import AVENet
from trainer.objective import Objective, negative_inputs

AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def measure(cfg: TrainConfig, batch: int, image_size: int, frames: int, steps: int, warmup: int,
            device: torch.device, fused: bool = True) -> dict:
    """samples/s of `steps` optimizer steps of `cfg`'s objective at `batch` samples on `device` (Adam fused, as the
    trainer's, unless `fused` is False, as SSL-TIE's)."""
    torch.manual_seed(cfg.seed)
    model = AVENet(cfg.model).to(device)
    mf = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model = model.to(memory_format=mf)
    if cfg.compile:
        model.imgnet.compile()
        model.audnet.compile()
    objective = Objective(model, cfg).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, fused=fused)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")
    image = torch.randn(batch, 3, image_size, image_size, device=device).contiguous(memory_format=mf)
    logmel = (torch.randn(batch, 1, 257, frames, device=device) * 20 - 30).contiguous(memory_format=mf)
    aug = torch.Generator().manual_seed(1)
    noise_gen = torch.Generator(device=device).manual_seed(2)
    dtype = AUTOCAST[cfg.precision]

    def step():
        silence, noise = negative_inputs(cfg, logmel, noise_gen)
        tf = draw_transform(batch, cfg.equivariance, aug) if cfg.equivariance.enabled else None
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = objective(image, logmel, silence, noise, tf, gather=False)["loss"]
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    elapsed = time.perf_counter() - t0
    return {"precision": cfg.precision, "channels_last": cfg.channels_last, "compile": cfg.compile,
            "encode_audio_once": cfg.encode_audio_once, "san": cfg.san.enabled, "batch": batch,
            "image_size": image_size, "frames": frames, "width": cfg.model.width, "steps": steps,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "threads": torch.get_num_threads(), "samples_per_s": batch * steps / elapsed}


def baseline_of(cfg: TrainConfig) -> TrainConfig:
    """SSL-TIE's loop on the same model and losses: fp32, eager, contiguous, audio encoded once per view."""
    return dataclasses.replace(cfg, precision="fp32", channels_last=False, compile=False, encode_audio_once=False)


def main(argv: list[str] | None = None) -> int:
    p = Parser(description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="a trainer recipe (default: built-in defaults = SSL-SaN at full size)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--frames", type=int, default=670, help="log-mel frames (670 = 10 s at 16 kHz)")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--precision", choices=list(AUTOCAST))
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="write the rows here")
    p.add_argument("overrides", nargs="*", help="key=value TrainConfig overrides (e.g. model.width=32)")
    args = p.parse_args(argv)
    cfg = load_config(TrainConfig, args.config, args.overrides)
    cfg = dataclasses.replace(cfg, precision=args.precision or cfg.precision,
                              channels_last=args.channels_last or cfg.channels_last, compile=args.compile or cfg.compile)
    device = torch.device(args.device)
    runs = [("this", cfg)] + ([] if args.no_baseline else [("ssl-tie baseline", baseline_of(cfg))])
    rows = []
    for name, c in runs:
        row = {"run": name, **measure(c, args.batch, args.image_size, args.frames, args.steps, args.warmup, device,
                                      fused=name == "this")}
        rows.append(row)
        print(f"{name:18s} {row['device']} precision={row['precision']} channels_last={row['channels_last']} "
              f"compile={row['compile']} audio_once={row['encode_audio_once']} batch={row['batch']} "
              f"image={row['image_size']} frames={row['frames']} width={row['width']}: "
              f"{row['samples_per_s']:.2f} samples/s", flush=True)
    if len(rows) == 2:
        print(f"speed-up over the baseline: {rows[0]['samples_per_s'] / rows[1]['samples_per_s']:.2f}x")
    if args.json:
        atomic_write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
