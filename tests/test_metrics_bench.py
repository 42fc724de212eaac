"""`python -m eval.bench` runs end to end on a tiny workload, checks the two implementations agree and says how the
numpy time was obtained."""
import json

from eval.bench import main


def test_bench_small_workload(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--maps", "6", "--ref-maps", "2", "--repeats", "1", "--thresholds", "51", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "extrapolated from 2 maps" in text and "counts identical on the reference maps: True" in text
    numbers = json.loads(out.read_text())
    assert numbers["counts_equal_on_ref_maps"] is True and numbers["numpy_extrapolated"] is True
    assert numbers["maps"] == 6 and numbers["thresholds"] == 51 and numbers["numba_median_s"] > 0
