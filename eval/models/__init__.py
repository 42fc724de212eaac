"""The model families `eval.run --model NAME` scores, each an adapter module (eval.models.base says what one
provides): `ssl_san` (this project's trainer: SSL-SaN and the SSL-TIE baseline, the default); from their released
checkpoints, as the negative-audio evaluation code runs them: `ssl_tie` (eval.models.ssl_tie), `ezvsl`, `fnac` and
`slavc` (eval.models.ezvsl), `lvs` and `ssl_align` (eval.models.lvs). A foreign family's module gives FAMILY (its
names), network(name), INPUTS (eval.models.base.Inputs) and MAP (the scale and shift of the cosine that make the
official map)."""
from __future__ import annotations

from torch import nn

from eval.errors import EvalError
from eval.models import ezvsl, lvs, ssl_san, ssl_tie
from eval.models.base import Adapter, Inputs
from eval.models.weights import load_strict, read_weights

FOREIGN = {name: module for module in (ssl_tie, ezvsl, lvs) for name in module.FAMILY}
MODELS = ("ssl_san", *FOREIGN)

__all__ = ["FOREIGN", "MODELS", "Adapter", "Inputs", "foreign_network", "load_adapter"]


def _check(name: str) -> None:
    if name not in MODELS:
        raise EvalError(f"--model: unknown model {name!r}; choose one of {', '.join(MODELS)}")


def load_adapter(name: str, ckpt: str, cfg) -> Adapter:
    """The adapter of family `name` with the weights of `ckpt` (`cfg`: the EvalConfig, for SSL-SaN's options)."""
    _check(name)
    if name == "ssl_san":
        return ssl_san.load(ckpt, cfg.image_size, cfg.silence_db, cfg.noise_db)
    family = FOREIGN[name]                       # a released file (.pth) or eval.convert's folder, loaded strictly
    net = family.network(name)
    load_strict(net, read_weights(ckpt, name), ckpt)
    return Adapter(name, net.eval(), family.INPUTS, *family.MAP, run_name=name)


def foreign_network(name: str) -> nn.Module:
    """The untrained network of a family whose checkpoints are released files (for eval.convert)."""
    _check(name)
    if name not in FOREIGN:
        raise EvalError(f"--model: {name!r} cannot be converted (its checkpoints are already safetensors + YAML); "
                        f"choose one of {', '.join(FOREIGN)}")
    return FOREIGN[name].network(name)
