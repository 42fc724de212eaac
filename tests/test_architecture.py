"""The architecture contracts of pyproject.toml ([tool.importlinter]): `lint-imports` passes on the tree, and each
contract fails when an import that breaks it is planted in a copy of the tree (so no contract is vacuous)."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT = str(Path(sys.executable).with_name("lint-imports"))
PACKAGES = ("pipeline", "trainer", "eval")


def _lint(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([LINT, "--no-cache", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_the_tree_keeps_every_contract():
    r = _lint(ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "Contracts: 7 kept, 0 broken." in r.stdout


# contract id -> (file of the copy, the import planted at its end)
PLANTED = {
    "stages": ("pipeline/load/augment.py", "import trainer.model"),
    "pipeline-stages": ("pipeline/shard/media.py", "import pipeline.load.features"),
    "loaders-know-the-format": ("pipeline/load/shards.py", "import pipeline.shard.media"),
    "common-plumbing": ("pipeline/common/atomic.py", "import pipeline.load.features"),
    "pure-metrics": ("eval/metrics/gt.py", "from eval import errors"),
    "ablation-on-top": ("eval/score.py", "import eval.ablate"),
    "no-cycles": ("eval/report.py", "import eval.rescore"),
}


@pytest.fixture(scope="module")
def tree_copy(tmp_path_factory) -> Path:
    dst = tmp_path_factory.mktemp("tree")
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


@pytest.mark.parametrize("contract", sorted(PLANTED))
def test_each_contract_catches_a_planted_import(tree_copy: Path, contract: str):
    path, line = PLANTED[contract]
    target = tree_copy / path
    original = target.read_text()
    assert _lint(tree_copy, "--contract", contract).returncode == 0       # the copy keeps it before the plant
    target.write_text(original + f"\n{line}\n")
    try:
        r = _lint(tree_copy, "--contract", contract)
    finally:
        target.write_text(original)
    assert r.returncode == 1 and "1 broken" in r.stdout, r.stdout[-2000:]
