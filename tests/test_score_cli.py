"""`python -m eval.score`: the documented example runs; npz and zarr give the same metrics; user errors are one line."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import zarr

from eval.score import main

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "SCORE_FORMAT.md"


def _example(tmp_path: Path) -> Path:
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S).group(1)
    exec(compile(code, str(DOC), "exec"), {"__name__": "doc_example"})
    return tmp_path / "example.npz"


def test_documented_example_runs_as_a_command(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _example(tmp_path)
    cmd = re.search(r"```bash\n(python -m eval.score example.npz[^\n]*)\n```", DOC.read_text()).group(1)
    proc = subprocess.run([sys.executable, *cmd.split()[1:]], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    m = json.loads((tmp_path / "example_scores" / "metrics.json").read_text())
    assert (tmp_path / "example_scores" / "config.yaml").exists()
    assert m["samples"] == 6 and m["negatives"]["offscreen"]["maps"] == 18
    assert set(m["tables"]) == {"table1", "table2", "table3", "table4"}
    assert m["positive"]["instance"]["adaptive"]["images"] == 3
    assert 0 <= m["retrieval"]["max_map"]["image_to_audio"]["P@1"] <= 100
    assert m["tables"]["table3"]["A2I_A@10"] == 100.0          # 10 >= 6 samples: every query finds its class
    assert "wrote" in proc.stdout


def test_zarr_store_gives_the_same_metrics_and_overrides_apply(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    npz = _example(tmp_path)
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    group = zarr.open_group(str(tmp_path / "maps.zarr"), mode="w")
    for name, arr in arrays.items():
        group.create_array(name, data=arr.astype(np.dtypes.StringDType()) if arr.dtype.kind == "U" else arr)
    assert main([str(npz), "--out", "a", "tau=0.2", "sweep_steps=21"]) == 0
    assert main([str(tmp_path / "maps.zarr"), "--out", "b", "tau=0.2", "sweep_steps=21"]) == 0
    a = json.loads((tmp_path / "a" / "metrics.json").read_text())
    b = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert a["thresholds"]["tau_U"] == 0.2
    a.pop("input"), b.pop("input")
    assert a == b


def test_calibration_file_sets_tau(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    npz = _example(tmp_path)
    with np.load(npz) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(tmp_path / "calib.npz", pos=arrays["pos"], silence=np.full((4, 2, 2), 0.7, np.float32))
    assert main([str(npz), "--out", "c", "--calibration", str(tmp_path / "calib.npz")]) == 0
    m = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert m["thresholds"]["tau_U"] == pytest.approx(0.7) and m["thresholds"]["source"] == "calibration set"


def _run(argv):
    return subprocess.run([sys.executable, "-m", "eval.score", *argv], cwd=ROOT, capture_output=True, text=True)


def test_user_errors_are_one_line_and_write_nothing(tmp_path):
    n = 3
    pos = np.zeros((n, 7, 7), np.float32)
    pos[1, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", pos=pos, gt=np.zeros((n, 224, 224), np.uint8), silence=pos * 0)
    np.savez(tmp_path / "nopos.npz", gt=np.zeros((n, 224, 224), np.uint8))
    np.savez(tmp_path / "two_gt.npz", pos=pos * 0, gt=np.zeros((n, 224, 224), np.uint8), boxes=np.zeros((n, 1, 4)))
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    (tmp_path / "empty.zarr").mkdir()
    cases = {
        "missing.npz": "no such file",
        "nan.npz": "pos: map of sample 1 holds NaN or inf",
        "nopos.npz": "no 'pos' array",
        "two_gt.npz": "give exactly one of 'gt', 'boxes', 'boxes_px'",
        "broken.npz": "cannot read maps",
        "empty.zarr": "cannot read maps",
    }
    for name, message in cases.items():
        out = tmp_path / f"out_{name}"
        proc = _run([str(tmp_path / name), "--out", str(out)])
        assert proc.returncode == 2, (name, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], (name, proc.stderr)
        assert not (out / "metrics.json").exists()
    proc = _run([str(tmp_path / "nopos.npz"), "--out", str(tmp_path / "o"), "tau_quantile=2"])
    assert proc.returncode == 2 and "tau_quantile" in proc.stderr


def test_incomplete_store_is_refused(tmp_path):
    group = zarr.open_group(str(tmp_path / "maps.zarr"), mode="w")
    group.attrs["complete"] = False
    group.create_array("pos", data=np.zeros((2, 7, 7), np.float32))
    proc = _run([str(tmp_path / "maps.zarr"), "--out", str(tmp_path / "o")])
    assert proc.returncode == 2 and "marked incomplete" in proc.stderr


def test_feature_maps_give_pooled_embeddings_and_max_map_scores():
    from eval.metrics.embeddings import max_map_scores, pooled_visual_embedding
    from eval.score import inputs_from_arrays

    rng = np.random.default_rng(5)
    vis, aud = rng.standard_normal((4, 6, 3, 3)), rng.standard_normal((4, 6))
    arrays = {"pos": np.zeros((4, 3, 3), np.float32), "gt": np.zeros((4, 224, 224), np.uint8),
              "vis_maps": vis, "emb_audio": aud}
    kw = inputs_from_arrays(arrays, 224, "x.npz")
    unit = vis / np.linalg.norm(vis, axis=1, keepdims=True)
    mean = unit.mean(axis=(2, 3))
    assert np.allclose(kw["img_emb"], mean / np.linalg.norm(mean, axis=1, keepdims=True))
    assert np.allclose(pooled_visual_embedding(vis), kw["img_emb"])
    assert np.array_equal(kw["retrieval_scores"], max_map_scores(vis, aud))
    assert kw["aud_emb"] is aud
