"""The model families `eval.run --model NAME` scores, each an adapter module (eval.models.base says what one
provides): `ssl_san` (this project's trainer: SSL-SaN and the SSL-TIE baseline, the default), `ezvsl`, `fnac` and
`slavc` (the EZ-VSL family of the negative-audio evaluation code, eval.models.ezvsl)."""
from __future__ import annotations

from eval.errors import EvalError
from eval.models import ezvsl, ssl_san
from eval.models.base import Adapter, Inputs

MODELS = ("ssl_san", "ezvsl", "fnac", "slavc")

__all__ = ["MODELS", "Adapter", "Inputs", "load_adapter"]


def load_adapter(name: str, ckpt: str, cfg) -> Adapter:
    """The adapter of family `name` with the weights of `ckpt` (`cfg`: the EvalConfig, for SSL-SaN's options)."""
    if name == "ssl_san":
        return ssl_san.load(ckpt, cfg.image_size, cfg.silence_db, cfg.noise_db)
    if name in ezvsl.FAMILY:
        return ezvsl.load(name, ckpt)
    raise EvalError(f"--model: unknown model {name!r}; choose one of {', '.join(MODELS)}")
