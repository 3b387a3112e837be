#!/usr/bin/env bash
# GPU check of the quickstart train + evaluate stages (same commands as dvc.yaml; cuda picked automatically).
# Run on a GPU machine in a copy of the repo that holds data/prepared/target and data/shifts/eval
# (`dvc repro shifts` first); writes models/, results/, plots/ there and its logs to $OUT (default ./gpu_check_out).
set -uo pipefail
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/gpu_check_out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
T=$OUT/timings.txt; : > $T
run() { local name=$1; shift; local t0=$(date +%s.%N); "$@" > $OUT/stage_$name.log 2>&1; local rc=$?; local t1=$(date +%s.%N);
        echo "$name rc=$rc $(python3 -c "print(round($t1-$t0,1))") s" | tee -a $T; grep -v "it/s\]" $OUT/stage_$name.log | tail -3; }
P="--params params.yaml --data data/prepared/target --backbone models/backbone"
tr() { run $1 python3 -m lpt_core.pipeline.train $P --section train_$1 --out models/$2 --work runs/ckpt/$2 ${3:-}; }
T0=$(date +%s)
tr lpt_phase1 lpt_phase1
tr lpt_phase2 lpt "--init models/lpt_phase1"
tr vpt vpt; tr linear linear; tr full_ft full_ft
tr lpt_random_phase1 lpt_random_phase1
tr lpt_random_phase2 lpt_random "--init models/lpt_random_phase1"
tr linear_random linear_random
for m in lpt vpt linear full_ft lpt_random linear_random; do
  run eval_$m python3 -m lpt_core.pipeline.evaluate --params params.yaml --artifact models/$m --shifts data/shifts/eval --backbone models/backbone --out results/$m
done
run baselines python3 -m lpt_core.pipeline.baselines --params params.yaml --data data/prepared/target --shifts data/shifts/eval --out metrics/baselines/pixel_logreg
run summarize python3 -m lpt_core.pipeline.summarize --results results metrics/baselines --metrics $OUT/summary.json --plots plots
echo "total $(( $(date +%s) - T0 )) s" | tee -a $T
python3 -c "import json; d=json.load(open('results/lpt/clean.json')); print(d['device'], d['images_per_second'])"
grep -h "img/s" $OUT/stage_*.log | tail -8
tar czf $OUT/results.tgz results plots models/*/meta.json $OUT/stage_*.log 2>/dev/null; rm -f $OUT/stage_*.log
