"""`python -m eval.ablate`: rows train with their S/N/L_S/L_N switches, are evaluated, and land in Table 4."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from eval.ablate import ROWS

ROOT = Path(__file__).resolve().parents[1]


def test_two_rows_end_to_end(shard_dir: Path, synth_corpus: Path, tmp_path: Path):
    out = tmp_path / "ablation"
    cmd = [sys.executable, "-m", "eval.ablate", "--config", str(ROOT / "trainer/configs/cpu_demo.yaml"),
           "--data", str(synth_corpus / "testsets/s4"), "--testset", "s4", "--out", str(out),
           "--rows", "none,S_LS", "--eval-args", "image_size=64 seeds=[1234] batch_size=4 num_workers=0",
           f"data.shard_dir={shard_dir}", f"data.synth_json={synth_corpus / 'synth.json'}", "model.width=8",
           "optim.batch_size=2", "data.loader.image_size=64", "data.loader.clip_seconds=1.0",
           "data.loader.window_seconds=1.0", "data.loader.workers=1", "val_every=0", "ckpt_every=0", "val_batches=1",
           "max_steps=2"]
    r = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                       env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert r.returncode == 0, r.stderr[-3000:]
    switches = {name: flags for name, *flags in ROWS}
    for row in ("none", "S_LS"):
        san = yaml.safe_load((out / "runs" / row / "config.yaml").read_text())["san"]
        assert [san["silence_negative"], san["noise_negative"], san["silence_map_loss"],
                san["noise_map_loss"]] == switches[row]
        assert json.loads((out / "results" / row / "metrics.json").read_text())
    table = (out / "report" / "tables.md").read_text()
    assert "Table 4" in table and "S_LS" in table and "none" in table
    # a finished row is kept on a re-run: nothing is trained again
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and again.stdout.count("already evaluated") == 2


def test_unknown_row_is_a_one_line_error(tmp_path: Path):
    r = subprocess.run([sys.executable, "-m", "eval.ablate", "--config", "x.yaml", "--data", str(tmp_path),
                        "--out", str(tmp_path), "--rows", "none,bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()] and "bogus" in r.stderr


def test_seeds_train_every_row_once_per_seed(tmp_path: Path):
    from eval.ablate import ROWS, train_command
    cmd = train_command("r.yaml", tmp_path, ROWS[1], 1, ["max_steps=2"], seeds=[1, 2, 3])
    assert cmd[-2:] == ["max_steps=2", "seeds=[1,2,3]"] and "name=S" in cmd
    assert not any(a.startswith("seeds=") for a in train_command("r.yaml", tmp_path, ROWS[1], 1, [], seeds=[]))
    (tmp_path / "r.yaml").write_text("{}")
    r = subprocess.run([sys.executable, "-m", "eval.ablate", "--config", str(tmp_path / "r.yaml"), "--data",
                        str(tmp_path), "--out", str(tmp_path / "a"), "--seeds", "-1"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == "error: --seeds: expected 0 or more, got -1"
