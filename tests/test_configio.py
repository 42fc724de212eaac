"""Typed config loading (YAML + overrides) and atomic writes."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Literal

import pytest
import yaml

from pipeline.common.atomic import atomic_open, atomic_write_json
from pipeline.common.config import ConfigError, load_config, parse_overrides, save_config, to_dict


@dataclasses.dataclass
class Optim:
    lr: float = 1e-4
    betas: tuple[float, ...] = (0.9, 0.999)


@dataclasses.dataclass
class Recipe:
    name: str = "x"
    steps: int = 10
    amp: Literal["no", "bf16", "fp16"] = "no"
    compile: bool = False
    resume: str | None = None
    optim: Optim = dataclasses.field(default_factory=Optim)


def test_defaults_yaml_then_overrides(tmp_path: Path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("steps: 20\noptim:\n  lr: 0.001\n")
    cfg = load_config(Recipe, recipe, ["optim.lr=3e-4", "compile=true", "amp=bf16", "optim.betas=[0.5, 0.9]"])
    assert cfg.steps == 20 and cfg.optim.lr == pytest.approx(3e-4) and cfg.compile is True
    assert cfg.amp == "bf16" and cfg.optim.betas == (0.5, 0.9) and cfg.resume is None
    assert isinstance(cfg.optim, Optim)


def test_errors_name_the_key_and_file(tmp_path: Path):
    with pytest.raises(ConfigError, match="unknown option"):
        load_config(Recipe, None, ["stepz=3"])
    with pytest.raises(ConfigError, match="steps: expected an integer"):
        load_config(Recipe, None, ["steps=2.5"])
    with pytest.raises(ConfigError, match="not one of"):
        load_config(Recipe, None, ["amp=fp8"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: {lr: fast}\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: optim\.lr: expected a number"):
        load_config(Recipe, bad)
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["steps"])


def test_save_roundtrip(tmp_path: Path):
    cfg = load_config(Recipe, None, ["name=run1", "resume=auto"])
    save_config(cfg, tmp_path / "config.yaml")
    assert yaml.safe_load((tmp_path / "config.yaml").read_text()) == to_dict(cfg)
    assert load_config(Recipe, tmp_path / "config.yaml") == cfg


def test_atomic_write_leaves_nothing_on_error(tmp_path: Path):
    target = tmp_path / "out.json"
    atomic_write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as fh:
            fh.write("half")
            raise RuntimeError("killed")
    assert target.read_text().strip().startswith("{") and sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_files_get_umask_mode(tmp_path: Path):
    import os
    atomic_write_json(tmp_path / "m.json", {})
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o666 & ~umask
