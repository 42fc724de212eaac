#!/usr/bin/env bash
# The end-to-end demo on the synthetic corpus (what `make demo` runs after set-up), in the four commands a user runs
# on real data: generate (here: synthesize) -> shard -> train (SSL-TIE baseline and SSL-SaN) -> evaluate + report.
# Usage: scripts/demo.sh [OUT]  (default demo/). Re-running resumes: finished steps are skipped.
set -euo pipefail
OUT=${1:-demo}
PY=${PYTHON:-.venv/bin/python}
STEPS=${DEMO_STEPS:-250}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
t0=$(date +%s)
say() { echo "[demo $(( $(date +%s) - t0 ))s] $*"; }

say "1-2/5 synthetic VGGSound-like corpus -> $OUT/vggsound, shards -> $OUT/shards/vggsound, IS3+"
PYTHON=$PY bash "$(dirname "$0")/demo_corpus.sh" "$OUT"
T="$OUT/vggsound/testsets"

for model in ssl_tie ssl_san; do
  if [ "$model" = ssl_tie ]; then
    san="san.silence_negative=false san.noise_negative=false san.silence_map_loss=false san.noise_map_loss=false"
  else
    san=""
  fi
  if [ ! -e "$OUT/runs/$model/DONE" ]; then
    say "3/5 train $model ($STEPS steps, cpu_demo recipe)"
    $PY trainer/train.py --config trainer/configs/cpu_demo.yaml --resume auto name=$model output_root="$OUT/runs" \
      data.shard_dir="$OUT/shards/vggsound" data.synth_json="$OUT/vggsound/synth.json" max_steps=$STEPS $san
    touch "$OUT/runs/$model/DONE"
  fi
  for testset in vggss is3 is3plus s4; do
    if [ ! -e "$OUT/results/$model/$testset/metrics.json" ]; then
      say "4/5 evaluate $model on $testset"
      $PY -m eval.run --ckpt "$OUT/runs/$model" --testset $testset --data "$T/$testset" \
        --out "$OUT/results/$model/$testset" image_size=160
    fi
  done
done

say "5/5 report -> $OUT/report/tables.md"
$PY -m eval.report "$OUT"/results/ssl_tie/* "$OUT"/results/ssl_san/* --out "$OUT/report"
say "done"
cat "$OUT/report/tables.md"
