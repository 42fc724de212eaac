#!/usr/bin/env bash
# The paper's claims on the synthetic corpus, with training seeds (`make reproduce`): the SSL-TIE baseline and SSL-SaN
# with SEEDS seeds each (default 3) on the four test sets, and the seven Table-4 rows with SEEDS seeds on S4, all with
# the demo's corpus and recipe (cpu_demo, DEMO_STEPS steps). Every cell carries its bootstrap interval over test
# samples; eval.report aggregates each recipe over its seeds (mean ± sd, the 95% t interval over seeds).
# Usage: scripts/reproduce.sh [OUT]  (default reproduce/). Re-running resumes: finished steps are skipped.
# Writes OUT/report/tables.md (baseline vs SSL-SaN, each run's best-val checkpoint), OUT/report_last/tables.md (the
# same runs' last checkpoints) and OUT/ablation/report/tables.md (Table 4).
set -euo pipefail
OUT=${1:-reproduce}
PY=${PYTHON:-.venv/bin/python}
STEPS=${DEMO_STEPS:-250}
SEEDS=${SEEDS:-3}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
t0=$(date +%s)
say() { echo "[reproduce $(( $(date +%s) - t0 ))s] $*"; }
seeds="[$(seq -s, 1 "$SEEDS")]"

say "1/4 the demo's corpus and shards -> $OUT/"
PYTHON=$PY scripts/demo_corpus.sh "$OUT"
T="$OUT/vggsound/testsets"
DATA=(data.shard_dir="$OUT/shards/vggsound" data.synth_json="$OUT/vggsound/synth.json" max_steps="$STEPS")

results=()
last=()
for model in ssl_tie ssl_san; do
  san=()
  [ "$model" = ssl_tie ] && san=(san.silence_negative=false san.noise_negative=false san.silence_map_loss=false
                                  san.noise_map_loss=false)
  say "2/4 train $model with seeds $seeds"
  $PY trainer/train.py --config trainer/configs/cpu_demo.yaml --resume auto name=$model output_root="$OUT/runs" \
    "${DATA[@]}" "seeds=$seeds" "${san[@]}"
  for k in $(seq 1 "$SEEDS"); do
    for testset in vggss is3 is3plus s4; do
      res="$OUT/results/$model/seed-$k/$testset"
      results+=("$res")
      if [ ! -e "$res/metrics.json" ]; then
        say "3/4 evaluate $model seed $k on $testset"
        $PY -m eval.run --ckpt "$OUT/runs/$model/seed-$k" --testset $testset --data "$T/$testset" --out "$res" \
          image_size=160
      fi
      # the same run's last checkpoint too: the best-val one can be an early step (README)
      res="$OUT/results_last/$model/seed-$k/$testset"
      last+=("$res")
      if [ ! -e "$res/metrics.json" ]; then
        say "3/4 evaluate $model seed $k on $testset, last checkpoint"
        step=$(ls -d "$OUT/runs/$model/seed-$k/checkpoints/step_"* | tail -n 1)
        $PY -m eval.run --ckpt "$step" --testset $testset --data "$T/$testset" --out "$res" image_size=160
      fi
    done
  done
done
$PY -m eval.report "${results[@]}" --out "$OUT/report"
$PY -m eval.report "${last[@]}" --out "$OUT/report_last"

say "4/4 the Table-4 ablation, seeds $seeds"
$PY -m eval.ablate --config trainer/configs/cpu_demo.yaml --data "$T/s4" --testset s4 --out "$OUT/ablation" \
  --seeds "$SEEDS" --eval-args "image_size=160" "${DATA[@]}"
say "done: $OUT/report/tables.md, $OUT/report_last/tables.md, $OUT/ablation/report/tables.md"
