"""pipeline.bench shard: runs end to end on the session corpus and reports throughput and a stage profile."""
from __future__ import annotations

import json
from pathlib import Path

from pipeline import bench


def test_bench_shard_reports_throughput_and_profile(synth_corpus: Path, tmp_path: Path):
    out = tmp_path / "bench.json"
    assert bench.main(["shard", "--corpus", str(synth_corpus), "--short-side", "0", "--repeats", "1",
                       "--workers", "1,2", "--min-duration", "1.5", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["clips"] > 0 and set(result["clips_per_s"]) == {"1", "2"}
    assert all(v > 0 for v in result["clips_per_s"].values())
    assert result["scaling_vs_first"]["1"] == 1.0
    assert result["cpu_bound_clips_per_s_per_worker"] > 0
    assert set(result["profile_cpu_ms_median_per_clip"]) == {"audio_decode", "resample", "centre_frame",
                                                         "jpeg_resize_encode_check", "flac_encode_check"}


def test_bench_rejects_bad_options(capsys):
    assert bench.main(["shard", "--workers", "a,b"]) == 2
    assert capsys.readouterr().err.startswith("error: --workers")
