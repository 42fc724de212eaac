"""eval.report: the paper's table layouts with several checkpoints side by side, the CSV, the figures, bad input."""
from __future__ import annotations

import csv
import io
import json

import pytest
import torch

from eval.config import EvalConfig
from eval.errors import EvalError
from eval.models.ssl_san import wrap
from eval.report import TABLE2, TABLE3, main
from eval.rescore import rescore
from eval.run import evaluate
from eval.testsets import read_testset
from pipeline.common.cli import run_cli
from pipeline.common.config import save_config
from tests.eval_fixtures import make_is3, make_vggss
from trainer.config import ModelConfig
from trainer.model import AVENet


def _result(tmp_path, name, testset, data, seed, train_seed=None):
    torch.manual_seed(seed)
    model = AVENet(ModelConfig(width=8))
    out = tmp_path / name
    cfg = EvalConfig(testset=testset, data=str(data), out=str(out), seeds=[5, 6], num_workers=0, device="cpu",
                     audio_seconds=0.5, image_size=64, overlay_samples=2)
    out.mkdir(parents=True)
    save_config(cfg, out / "config.yaml")
    evaluate(wrap(model, cfg.image_size), read_testset(testset, data), cfg, out / "maps.zarr",
             {"testset": testset, "model": name.split("_")[0], "train_seed": train_seed,
              "train_san": {"S": seed == 1, "N": False, "L_S": seed == 1, "L_N": False}})
    rescore(out, cfg)
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("results")
    vggss, is3 = make_vggss(tmp / "vggss"), make_is3(tmp / "is3")
    return [_result(tmp, "SSL-SaN_is3", "is3", is3, 1), _result(tmp, "SSL-SaN_vggss", "vggss", vggss, 1),
            _result(tmp, "SSL-TIE_vggss", "vggss", vggss, 2)]


def test_tables_side_by_side_in_paper_layout(results, tmp_path):
    out = tmp_path / "report"
    assert main([str(r) for r in results] + ["--out", str(out)]) == 0
    md = (out / "tables.md").read_text()
    t2 = md.split("## Table 2")[1].split("## Table 3")[0]
    header = [line for line in t2.splitlines() if line.startswith("| Test set")][0]
    marked = [f"{h} {'↓' if 'pIA' in h else '↑'}" for h, _ in TABLE2]
    assert header == "| Test set | Model | Samples | " + " | ".join(marked) + " |"
    rows = [line for line in t2.splitlines() if line.startswith("| ") and not line.startswith("| Test set")]
    # grouped by test set in the paper's order (VGG-SS before IS3), the given order inside a group
    assert [r.split(" | ")[:2] for r in rows] == [["| VGG-SS", "SSL-SaN"], ["| VGG-SS", "SSL-TIE"],
                                                   ["| IS3", "SSL-SaN"]]
    metrics = json.loads((results[1] / "metrics.json").read_text())["metrics"]
    iv = metrics["intervals"]["tables"]["table1"]["Alignment"]         # value ± half-width of its interval
    t1 = [line for line in md.split("## Table 2")[0].splitlines() if line.startswith("| VGG-SS | SSL-SaN")][0]
    assert t1.split(" | ")[4] == f"{metrics['tables']['table1']['Alignment']:.2f} ± {(iv['hi'] - iv['lo']) / 2:.2f}"
    assert iv["hi"] > iv["lo"]
    assert "Rows: VGG-SS, all 2 measured rows: 5/5 samples, 2 noise and offscreen draws a sample; ± half-width of " \
           "the 95% bootstrap interval over 5 image groups, 2,000 resamples; IS3 / SSL-SaN: 8/8 samples" in t2
    assert rows[0].split(" | ")[2] == "5/5" and rows[2].split(" | ")[2] == "8/8"      # every sample of each set
    t4 = md.split("## Table 4")[1]
    assert "| VGG-SS | SSL-SaN | 5/5 | ✓ |  | ✓ |  |" in t4 and "| VGG-SS | SSL-TIE | 5/5 |  |  |  |  |" in t4
    assert "| I→A P@1 ↑ | I→A P@5 ↑ |" in md.split("## Table 3")[1]
    assert "| Magnitude ↓ | Alignment ↑ |" in md
    lines = list(csv.DictReader(io.StringIO((out / "tables.csv").read_text())))
    t3 = [x for x in lines if x["table"] == "table3" and x["model"] == "SSL-TIE"]
    assert [x["column"] for x in t3] == [h for h, _ in TABLE3]
    value = float(t3[0]["value"])
    tie = json.loads((results[2] / "metrics.json").read_text())["metrics"]
    assert value == tie["tables"]["table3"]["I2A_P@1"]
    ends = tie["intervals"]["tables"]["table3"]["I2A_P@1"]
    assert (float(t3[0]["lo"]), float(t3[0]["hi"])) == (ends["lo"], ends["hi"])
    assert [x for x in lines if x["column"] == "tau_U"] and [x for x in lines if x["table"] == "table1"]
    for f in ("maxima.png", "overlays_vggss_SSL-SaN.png", "overlays_vggss_SSL-TIE.png", "overlays_is3_SSL-SaN.png"):
        assert (out / f).stat().st_size > 1000, f


def test_each_run_writes_its_own_report(results):
    for r in results:
        assert "## Table 1" in (r / "tables.md").read_text() and (r / "maxima.png").is_file()


def test_report_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run_cli(main, [str(tmp_path / "empty"), "--out", str(tmp_path / "r")]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'empty' / 'metrics.json'}: not found " \
                                              f"(is {tmp_path / 'empty'} a finished eval.run output?)"
    (tmp_path / "empty" / "metrics.json").write_text("{}")
    with pytest.raises(EvalError, match="no 'metrics' entry"):
        main([str(tmp_path / "empty"), "--out", str(tmp_path / "r")])


def test_paper_rows_beside_measured_ones(results, tmp_path):
    out = tmp_path / "with_paper"
    assert main([str(results[1]), str(results[0]), "--paper", "--out", str(out)]) == 0
    md = (out / "tables.md").read_text()
    t2 = md.split("## Table 2")[1].split("## Table 3")[0]
    rows = [r.split(" | ")[1] for r in t2.splitlines() if r.startswith("| ") and not r.startswith("| Test set")]
    assert rows == ["SSL-SaN", "SSL-TIE (paper)", "SSL-SaN (paper)", "SSL-SaN", "SSL-TIE (paper)", "SSL-SaN (paper)"]
    assert "| VGG-SS | SSL-SaN (paper) | — | 29.61 | 52.74 | 29.97 | 48.66 | 0.01 | 99.99 | 0.00 | 100.00 | 1.72 " \
           "| 98.17 | 45.63 | 46.05 |" in t2
    assert "| IS3 | SSL-TIE (paper) | — | 0.98 | 0.28 | -0.0530 |" in md
    t3 = md.split("## Table 3")[1].split("## Table 4")[0]
    assert "| VGG-SS | SSL-TIE (paper) | — | 16.25 |" in t3
    assert "| IS3 | SSL-TIE (paper)" not in t3              # not in the paper


def test_rows_of_one_test_set_are_compared_resample_by_resample(results, tmp_path):
    out = tmp_path / "paired"
    assert main([str(results[1]), str(results[2]), "--out", str(out)]) == 0
    md = (out / "tables.md").read_text()
    section = md.split("## Paired differences")[1]
    a = json.loads((results[1] / "metrics.json").read_text())["metrics"]["tables"]
    b = json.loads((results[2] / "metrics.json").read_text())["metrics"]["tables"]
    lines = [x for x in csv.DictReader(io.StringIO((out / "tables.csv").read_text())) if x["table"] == "paired"]
    assert {x["model"] for x in lines} == {"SSL-TIE - SSL-SaN"} and len(lines) == 33
    align = next(x for x in lines if x["column"] == "table1.Alignment")
    assert float(align["value"]) == pytest.approx(b["table1"]["Alignment"] - a["table1"]["Alignment"], abs=1e-12)
    assert float(align["lo"]) <= float(align["value"]) <= float(align["hi"]) and 0 < float(align["p"]) <= 1
    row = f"| VGG-SS | SSL-TIE - SSL-SaN | 1 | Alignment | {b['table1']['Alignment'] - a['table1']['Alignment']:.2f}"
    assert row in section
    # one row per test set, or rows of different test sets: nothing to pair
    alone = tmp_path / "alone"
    assert main([str(results[0]), str(results[1]), "--out", str(alone)]) == 0
    assert "## Paired differences" not in (alone / "tables.md").read_text()


def test_a_recipe_over_its_seeds(tmp_path):
    import math
    vggss = make_vggss(tmp_path / "vggss")
    runs = [_result(tmp_path, f"SSL-SaN_seed{k}", "vggss", vggss, 10 + k, train_seed=k) for k in (1, 2, 3)]
    base = [_result(tmp_path, f"SSL-TIE_seed{k}", "vggss", vggss, 20 + k, train_seed=k) for k in (1, 2)]
    out = tmp_path / "report"
    assert main([str(r) for r in runs + base] + ["--out", str(out)]) == 0
    md = (out / "tables.md").read_text()
    t1 = md.split("## Table 2")[0]
    values = [json.loads((r / "metrics.json").read_text())["metrics"]["tables"]["table1"]["Alignment"] for r in runs]
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    row = [line for line in t1.splitlines() if line.startswith("| VGG-SS | SSL-SaN (3 seeds) | 5/5 |")][0]
    assert row.split(" | ")[4] == f"{mean:.2f} ± {sd:.2f}"
    assert [line.split(" | ")[1] for line in t1.splitlines() if line.startswith("| VGG-SS")] == \
        ["SSL-SaN (3 seeds)", "SSL-SaN/seed-1", "SSL-SaN/seed-2", "SSL-SaN/seed-3",
         "SSL-TIE (2 seeds)", "SSL-TIE/seed-1", "SSL-TIE/seed-2"]
    seeds = md.split("## Seeds")[1]
    half = 4.303 * sd / math.sqrt(3)                          # t(0.975, 2 degrees of freedom)
    line = [x for x in seeds.splitlines() if "| 1: Alignment |" in x][0]
    assert f"| {mean:.2f} | {sd:.2f} | {' / '.join(f'{v:.2f}' for v in values)} | " \
           f"[{mean - half:.2f}, {mean + half:.2f}] |" in line
    assert "(seeds 1, 2, 3)" in line and "## Paired differences" not in md   # three rows: no pair
    assert "Rows: SSL-SaN (3 seeds), SSL-TIE (2 seeds): mean ± standard deviation over the training seeds (their " \
           "95% t interval: section Seeds); VGG-SS, all 5 measured rows: 5/5 samples, 2 noise and offscreen draws " \
           "a sample;" in t1
    # the two recipes over their seeds: SSL-TIE minus SSL-SaN, Welch interval by hand
    tie = [json.loads((r / "metrics.json").read_text())["metrics"]["tables"]["table1"]["Alignment"] for r in base]
    qa, qb = sd ** 2 / 3, (tie[0] - tie[1]) ** 2 / 2 / 2
    df = (qa + qb) ** 2 / (qa ** 2 / 2 + qb ** 2 / 1)
    t = {1: 12.706, 2: 4.303, 3: 3.182}[math.floor(df)]
    diff, half = sum(tie) / 2 - mean, t * math.sqrt(qa + qb)
    compared = md.split("## Recipes compared over seeds")[1]
    line = [x for x in compared.splitlines() if "| 1 | Alignment |" in x][0]
    assert line.startswith("| VGG-SS | SSL-TIE - SSL-SaN | 1 | Alignment | ")
    assert f"{diff:.2f}" in line and f"[{diff - half:.2f}, {diff + half:.2f}] | 3 vs 2 |" in line
    rows = list(csv.DictReader(io.StringIO((out / "tables.csv").read_text())))
    welch = [x for x in rows if x["table"] == "seeds_diff" and x["column"] == "table1.Alignment"][0]
    assert float(welch["value"]) == pytest.approx(diff) and float(welch["hi"]) == pytest.approx(diff + half)
    assert (out / "overlays_vggss_SSL-SaN_seed-2.png").is_file()
