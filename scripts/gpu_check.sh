#!/usr/bin/env bash
# The GPU benchmark suite in one command (lpt_core/bench/gpu.py), for a fresh H200 machine.
#
#   bash scripts/gpu_check.sh [OUT_DIR] [extra args, e.g. --only eval,train]
#
# Runs the package from source (PYTHONPATH=.) with only torch, timm, numpy, scipy,
# scikit-image and pandas needed. Each section is isolated (an error is printed and recorded,
# the next section runs); gpu_bench.json / gpu_bench.md in OUT_DIR (default: $OUT, else
# ./bench_out) are rewritten after every section, so a run cut short keeps what it measured.
# Runs the CUDA-marked unit tests first (GPU_CHECK_TESTS=0 skips them; at most 150 s), then the
# suite under a wall-clock cap of GPU_CHECK_TIMEOUT seconds (default 420). Test it on a CPU with:
#   bash scripts/gpu_check.sh /tmp/gpu_out --quick --device cpu
# The nightly-at-scale figures (issue 15) fit one call each on an H200 (about 4 and 6 minutes):
#   GPU_CHECK_TESTS=0 GPU_CHECK_TIMEOUT=560 bash scripts/gpu_check.sh "$OUT" --only matmul,fastpath
#   GPU_CHECK_TESTS=0 GPU_CHECK_TIMEOUT=560 bash scripts/gpu_check.sh "$OUT" --only matmul,night
set -u -o pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-${OUT:-bench_out}}"
shift $(( $# > 0 ? 1 : 0 ))
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 DVC_NO_ANALYTICS=1
echo "[gpu_check] repo $PWD, output $OUT_DIR, $(date -u +%FT%TZ)"
{ nvidia-smi || echo "nvidia-smi unavailable"; } > "$OUT_DIR/nvidia-smi.txt" 2>&1
python3 - <<'PY' 2>&1 | tee "$OUT_DIR/env.txt"
import importlib, platform
print("python", platform.python_version())
for name in ("torch", "timm", "numpy", "scipy", "skimage", "pandas", "torchvision", "wand"):
    try:
        print(name, getattr(importlib.import_module(name), "__version__", "?"))
    except Exception as exc:  # a missing optional library only disables the rows that need it
        print(name, "MISSING:", type(exc).__name__, exc)
import torch
print("cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
PY
if [ "${GPU_CHECK_TESTS:-1}" = 1 ] && python3 -c "import sys, torch; sys.exit(not torch.cuda.is_available())"; then
  # The CUDA-marked unit tests first (reuse == whole-block naive on CUDA, bf16 phase-2 steps,
  # exact bf16 resume, CUDA transforms, ViT-B/16 LPT throughput): ~1 min, capped at 150 s.
  echo "[gpu_check] CUDA unit tests"
  timeout --signal=TERM --kill-after=10 150 python3 -m pytest -q -s -p no:cacheprovider \
    tests/core/test_models_gpu.py tests/core/test_train_gpu.py tests/core/test_eval_sharing.py \
    > "$OUT_DIR/gpu_tests.log" 2>&1
  echo "[gpu_check] CUDA unit tests exit code $? (log: $OUT_DIR/gpu_tests.log)"; tail -5 "$OUT_DIR/gpu_tests.log"
fi
timeout --signal=TERM --kill-after=20 "${GPU_CHECK_TIMEOUT:-420}" \
  python3 -m lpt_core.bench.gpu --out "$OUT_DIR" "$@" 2>&1 | tee "$OUT_DIR/gpu_bench.log"
rc=${PIPESTATUS[0]}
echo "[gpu_check] exit code $rc (124 = timed out; partial results are in $OUT_DIR)"
ls -l "$OUT_DIR"
exit "$rc"
