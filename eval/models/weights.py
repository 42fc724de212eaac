"""Foreign checkpoints, read without running their code: a released PyTorch pickle (`.pth`, `.pth.tar`) only through
`torch.load(weights_only=True)` (tensors and plain containers; a pickle that would build any other object, a
`__reduce__` that runs a command among them, is refused before anything runs), or the safetensors + JSON folder
`python -m eval.convert` writes from one.

The state dict is found under the wrappers the released files use (`model`, `state_dict`, `model_state_dict`, `net`,
nested) and a DataParallel / DDP `module.` prefix is dropped; it must then match the adapter's network exactly
(strict), or the file is refused naming what is missing or left over."""
from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import torch
from safetensors.torch import load_file

from eval.errors import EvalError

WRAPPERS = ("model", "state_dict", "model_state_dict", "net")
META = "model.json"           # eval.convert's folder: model.safetensors + this
WEIGHTS = "model.safetensors"


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _unpickler_reason(exc: Exception) -> str:
    """The reason torch's weights-only unpickler gives (e.g. `Unsupported global: GLOBAL posix.system ...`), without
    its advice to load the file unsafely."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    skip = ("Weights only load failed", "Check the documentation", "Please file an issue")
    return next((ln for ln in lines if not ln.startswith(skip)), type(exc).__name__)


def read_pth(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a released checkpoint file, unwrapped and without `module.`."""
    try:
        with warnings.catch_warnings():          # its pickle-protocol notice: the error below says what matters
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EvalError(f"{path}: no such file") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as exc:
        raise EvalError(f"{path}: refused: not a plain tensor checkpoint, nothing in it was run (torch.load with "
                        f"weights_only=True: {_unpickler_reason(exc)})") from None
    while isinstance(obj, dict) and not _is_state_dict(obj):
        inner = next((obj[k] for k in WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not _is_state_dict(obj):
        raise EvalError(f"{path}: no state dict of tensors found (looked under {', '.join(WRAPPERS)})")
    return {k.removeprefix("module."): v for k, v in obj.items()}


def _is_state_dict(obj: dict) -> bool:
    return bool(obj) and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def read_weights(path: str | Path, model: str) -> dict[str, torch.Tensor]:
    """The state dict of `path`: an eval.convert folder (its model.json must name `model`) or a released file."""
    path = Path(path)
    if path.is_dir():
        meta_path = path / META
        if not meta_path.is_file() or not (path / WEIGHTS).is_file():
            raise EvalError(f"{path}: not an eval.convert folder ({META} and {WEIGHTS} expected)")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise EvalError(f"{meta_path}: {_first_line(exc)}") from None
        if meta.get("model") != model:
            raise EvalError(f"{path}: converted for --model {meta.get('model')!r}, not {model!r}")
        try:
            return load_file(path / WEIGHTS)
        except Exception as exc:                     # safetensors raises its own error types
            raise EvalError(f"{path / WEIGHTS}: {_first_line(exc)}") from None
    return read_pth(path)


def load_strict(net: torch.nn.Module, state: dict[str, torch.Tensor], path) -> None:
    """Load `state` into `net`, every key and shape matching, or refuse `path` in one line."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or shapes:
        parts = [f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
                 f"{len(extra)} unexpected (e.g. {extra[0]})" if extra else "",
                 f"{len(shapes)} of another shape (e.g. {shapes[0]})" if shapes else ""]
        raise EvalError(f"{path}: not a {type(net).__name__} state dict: " + ", ".join(p for p in parts if p))
    net.load_state_dict(state, strict=True)
