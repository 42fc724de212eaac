"""Checkpoints: write and read `runs/<name>/checkpoints/step_XXXXXXXX/` atomically; `load_model` for the evaluator.

A step directory holds
- `model.safetensors`: AVENet's state_dict (SSL-TIE parameter names, no wrapper prefixes);
- `optimizer.safetensors`: the optimizer's per-parameter tensors, keyed `state.<index>.<name>`;
- `state.json`: step, epoch, the optimizer's param_groups, scheduler and grad-scaler state, validation metrics, and
  per process the RNG states (python, numpy, torch CPU/CUDA, the trainer's own generators) and the loader position;
- `config.yaml`: the resolved TrainConfig.
It is written under a temporary name and renamed into place, so a killed job never leaves a half checkpoint; the run's
`checkpoints/best` is a text file naming the best step directory. state.json, written last, records the SHA-256 of
the other three files (`integrity`); every read checks them (`check_checkpoint`), and weights must be finite, so a
truncated or changed file is an error naming it, never different weights. `--resume auto` = the highest intact step
(`latest_intact`: damaged newer steps are reported and passed over).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pipeline.common import integrity
from pipeline.common.atomic import atomic_write_json, atomic_write_text
from pipeline.common.cli import UserError
from pipeline.common.config import ConfigError, load_config, save_config
from trainer.config import TrainConfig
from trainer.model import AVENet

STEP_RE = re.compile(r"^step_(\d{8})$")
STATE = "state.json"


class CheckpointError(UserError, ValueError):
    """A checkpoint path that does not hold what it should (one-line message naming the path)."""


def step_dir_name(step: int) -> str:
    return f"step_{step:08d}"


def encode_tensor(t: torch.Tensor) -> str:
    """A byte tensor (an RNG state) as base64 text for JSON."""
    return base64.b64encode(t.cpu().numpy().tobytes()).decode("ascii")


def decode_tensor(s: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(s)), dtype=torch.uint8).clone()


def to_json(obj: Any) -> Any:
    """A loader's state_dict made JSON-safe: bytes (e.g. DALI's pipeline checkpoint) become {"__b64__": text}."""
    if isinstance(obj, (bytes, bytearray)):
        return {"__b64__": base64.b64encode(bytes(obj)).decode("ascii")}
    if isinstance(obj, dict):
        return {k: to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    return obj


def from_json(obj: Any) -> Any:
    if isinstance(obj, dict):
        if set(obj) == {"__b64__"}:
            return base64.b64decode(obj["__b64__"])
        return {k: from_json(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [from_json(v) for v in obj]
    return obj


def rng_state(generators: dict[str, torch.Generator]) -> dict[str, Any]:
    """Every RNG a step may touch: python, numpy, torch (CPU and the current CUDA device) and named generators."""
    np_state = np.random.get_state()
    out: dict[str, Any] = {
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": encode_tensor(torch.get_rng_state()),
        "generators": {k: encode_tensor(g.get_state()) for k, g in generators.items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["cuda"] = encode_tensor(torch.cuda.get_rng_state())
    return out


def set_rng_state(state: dict[str, Any], generators: dict[str, torch.Generator]) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    npv = state["numpy"]
    np.random.set_state((npv[0], np.array(npv[1], dtype=np.uint32), npv[2], npv[3], npv[4]))
    torch.set_rng_state(decode_tensor(state["torch"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(decode_tensor(state["cuda"]))
    for k, g in generators.items():
        g.set_state(decode_tensor(state["generators"][k]))


def params_digest(model: torch.nn.Module) -> str:
    """sha256 of every parameter's bytes (not buffers: BatchNorm statistics are per process between broadcasts);
    equal on all processes of a healthy DDP run."""
    h = hashlib.sha256()
    for name, p in model.named_parameters():
        h.update(name.encode())
        h.update(p.detach().cpu().float().contiguous().numpy().tobytes())
    return h.hexdigest()


def optimizer_tensors(opt_state: dict) -> tuple[dict[str, torch.Tensor], list[dict]]:
    """Split an optimizer state_dict into flat tensors and the JSON-able param_groups."""
    tensors = {}
    for idx, per_param in opt_state["state"].items():
        for name, value in per_param.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"state.{idx}.{name}"] = t.detach().cpu().contiguous()
    return tensors, opt_state["param_groups"]


def optimizer_state(tensors: dict[str, torch.Tensor], param_groups: list[dict]) -> dict:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, t in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = t
    return {"state": state, "param_groups": param_groups}


def save_checkpoint(run_dir: Path, step: int, model: AVENet, optimizer_state_dict: dict, state: dict,
                    cfg: TrainConfig, keep: int) -> Path:
    """Write `checkpoints/step_XXXXXXXX/` atomically (temporary directory + rename) and prune old step directories,
    keeping the newest `keep` and the best. Every tensor must be finite: a poisoned model is never written."""
    ckpt_root = run_dir / "checkpoints"
    ckpt_root.mkdir(parents=True, exist_ok=True)
    weights = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise FloatingPointError(f"step {step}: non-finite weights in {bad[:3]}; checkpoint not written")
    final = ckpt_root / step_dir_name(step)
    tmp = ckpt_root / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        save_file(weights, str(tmp / "model.safetensors"))
        opt_tensors, groups = optimizer_tensors(optimizer_state_dict)
        save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
        save_config(cfg, tmp / "config.yaml")
        files = integrity.record(tmp, exclude=(STATE,))
        atomic_write_json(tmp / STATE, {**state, "step": step, "optimizer_param_groups": groups,
                                        "integrity": {"algorithm": integrity.ALGORITHM, "files": files}})
        for f in tmp.iterdir():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(ckpt_root, keep)
    return final


def mark_best(run_dir: Path, step: int) -> None:
    atomic_write_text(run_dir / "checkpoints" / "best", step_dir_name(step) + "\n")


def _steps(ckpt_root: Path) -> list[Path]:
    if not ckpt_root.is_dir():
        return []
    dirs = [d for d in ckpt_root.iterdir() if d.is_dir() and STEP_RE.match(d.name) and (d / "state.json").is_file()]
    return sorted(dirs, key=lambda d: d.name)


def _best(ckpt_root: Path) -> Path | None:
    f = ckpt_root / "best"
    if not f.is_file():
        return None
    d = ckpt_root / f.read_text().strip()
    return d if (d / "state.json").is_file() else None


def _prune(ckpt_root: Path, keep: int) -> None:
    best = _best(ckpt_root)
    for d in _steps(ckpt_root)[:-keep] if keep > 0 else []:
        if best is None or d.resolve() != best.resolve():
            shutil.rmtree(d, ignore_errors=True)


def latest_intact(run_dir: Path) -> tuple[Path | None, list[str]]:
    """(the highest step directory that passes `check_checkpoint` or None, one line per newer damaged step)."""
    skipped = []
    for step_dir in reversed(_steps(Path(run_dir) / "checkpoints")):
        try:
            check_checkpoint(step_dir)
            return step_dir, skipped
        except CheckpointError as exc:
            skipped.append(str(exc))
    return None, skipped


def resolve(path: str | Path, which: str = "best") -> Path:
    """A step directory from a step directory, a `checkpoints/` folder or a run directory (`which`: best | latest;
    best falls back to latest when no best is marked)."""
    p = Path(path)
    if (p / "state.json").is_file() and (p / "model.safetensors").is_file():
        return p
    root = p if p.name == "checkpoints" else p / "checkpoints"
    found = (_best(root) if which == "best" else None) or (_steps(root)[-1] if _steps(root) else None)
    if found is None:
        raise CheckpointError(f"{path}: no checkpoint (expected a step directory with model.safetensors and "
                              f"state.json, or a run directory holding checkpoints/step_*)")
    return found


def load_state(step_dir: Path) -> dict:
    try:
        state = json.loads((step_dir / STATE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{step_dir / STATE}: unreadable checkpoint state: {exc}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{step_dir / STATE}: unreadable checkpoint state: not a JSON object")
    return state


def check_checkpoint(step_dir: Path) -> dict:
    """The state of an intact step directory: its files equal the SHA-256 that state.json recorded (checkpoints
    written before the record existed: model.safetensors present); else CheckpointError naming the file at fault."""
    state = load_state(step_dir)
    rec = state.get("integrity")
    if isinstance(rec, dict) and isinstance(rec.get("files"), dict):
        problems = integrity.verify(step_dir, rec["files"], exclude=(STATE,))
        if problems:
            raise CheckpointError(f"{step_dir}: damaged checkpoint: {'; '.join(problems[:3])}")
    elif not (step_dir / "model.safetensors").is_file():
        raise CheckpointError(f"{step_dir / 'model.safetensors'}: missing")
    return state


def load_optimizer(step_dir: Path, state: dict) -> dict:
    f = step_dir / "optimizer.safetensors"
    try:
        return optimizer_state(load_file(str(f)), state["optimizer_param_groups"])
    except Exception as exc:  # safetensors raises its own error types for a file that is not safetensors
        raise CheckpointError(f"{f}: cannot load the optimizer state: "
                              f"{(str(exc).splitlines() or [type(exc).__name__])[0]}") from None


def load_weights(model: AVENet, step_dir: Path) -> None:
    f = step_dir / "model.safetensors"
    try:
        weights = load_file(str(f))
        model.load_state_dict(weights, strict=True)
    except Exception as exc:  # safetensors raises its own error types for a file that is not safetensors
        raise CheckpointError(f"{f}: cannot load weights: {(str(exc).splitlines() or [type(exc).__name__])[0]}") \
            from None
    bad = [k for k, v in weights.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise CheckpointError(f"{f}: non-finite values in {bad[:3]}{' ...' if len(bad) > 3 else ''}")


def load_train_config(step_dir: Path) -> TrainConfig:
    """The TrainConfig a step directory was written with."""
    try:
        return load_config(TrainConfig, step_dir / "config.yaml")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from None


def load_model(path: str | Path, which: str = "best", device: str | torch.device = "cpu") -> tuple[AVENet, TrainConfig]:
    """(AVENet in eval mode, its TrainConfig) from a step directory or a run directory (best, else latest)."""
    step_dir = resolve(path, which)
    check_checkpoint(step_dir)
    cfg = load_train_config(step_dir)
    model = AVENet(cfg.model)
    load_weights(model, step_dir)
    return model.to(device).eval(), cfg
