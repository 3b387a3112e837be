#!/usr/bin/env bash
# GPU check of the quickstart train + evaluate stages: the same commands as dvc.yaml (cuda picked
# automatically). Run on a GPU machine in a copy of the repo that holds data/prepared/target and
# data/shifts/eval (`dvc repro shifts` first); writes models/, results/, metrics/, plots/ there and
# its logs and timings to $OUT (default ./gpu_check_out).
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/gpu_check_out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
T=$OUT/timings.txt; : > "$T"
run() {
  local name=$1; shift
  local t0 t1 rc; t0=$(date +%s.%N); "$@" > "$OUT/stage_$name.log" 2>&1; rc=$?; t1=$(date +%s.%N)
  echo "$name rc=$rc $(python3 -c "print(round($t1-$t0,1))") s" | tee -a "$T"; grep -v "it/s\]" "$OUT/stage_$name.log" | tail -3
}
MODELS=$(python3 -c "import yaml; print(' '.join(yaml.safe_load(open('params.yaml'))['models']))")
BACKBONE=$(python3 -c "import yaml; print(yaml.safe_load(open('params.yaml'))['paths']['backbone'])")
T0=$(date +%s)
for m in $MODELS; do
  run "train_$m" lpt train --params params.yaml --model "$m" --data data/prepared/target --backbone "$BACKBONE" \
      --out "models/$m" --checkpoints "runs/ckpt/$m"
done
for m in $MODELS; do
  run "eval_$m" lpt evaluate --params params.yaml --artifact "models/$m" --shifts data/shifts/eval \
      --backbone "$BACKBONE" --out "results/$m"
done
run baselines python3 -m lpt_core.pipeline.baselines --params params.yaml --data data/prepared/target \
    --shifts data/shifts/eval --out metrics/baselines/pixel_logreg
run summarize python3 -m lpt_core.pipeline.summarize --results results metrics/baselines --metrics metrics/models \
    --plots plots
echo "total $(( $(date +%s) - T0 )) s" | tee -a "$T"
cp plots/summary.csv "$OUT/" 2>/dev/null
tar czf "$OUT/results.tgz" results plots metrics/models models/*/meta.json "$OUT"/stage_*.log 2>/dev/null
rm -f "$OUT"/stage_*.log
