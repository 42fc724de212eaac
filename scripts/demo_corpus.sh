#!/usr/bin/env bash
# The demo's synthetic corpus, its shards (with their quality report) and IS3+ under OUT (scripts/demo.sh and scripts/reproduce.sh share it).
# Usage: PYTHON=... scripts/demo_corpus.sh OUT. Every step resumes: what is finished is kept.
set -euo pipefail
OUT=$1
PY=${PYTHON:-.venv/bin/python}
$PY -m pipeline.synth --out "$OUT/vggsound" --clips 240 --seconds 3 --classes 4 --seed 11 \
  --is3-images 24 --s4-videos 12 --clean-per-class 2 test_fraction=0.15
$PY -m pipeline.shard --src "$OUT/vggsound" --out "$OUT/shards/vggsound" --shard-size 32 --val-fraction 0.15
$PY -m pipeline.quality "$OUT/shards/vggsound" --out "$OUT/quality"
T="$OUT/vggsound/testsets"
if [ ! -e "$T/is3plus/.complete" ]; then
  $PY -m eval.is3plus --is3 "$T/is3" --clean-audio "$T/is3_clean_audio" \
    --mapping "$T/is3_clean_audio/class_mapping.json" --out "$T/is3plus"
  touch "$T/is3plus/.complete"
fi
