#!/usr/bin/env bash
# Installs everything lpt-robustness needs, offline-capable: system packages from Debian
# (Fashion-MNIST IDX files, ImageMagick for Wand, chromium for the browser test) and the
# Python package with its dependencies. Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
[ -d /usr/share/datasets/fashion-mnist ] || need_apt+=(dataset-fashion-mnist)
command -v convert-im6.q16 >/dev/null 2>&1 || ldconfig -p | grep -q libMagickWand || need_apt+=(imagemagick libmagickwand-dev)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q "${need_apt[@]}" >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q "${need_apt[@]}" >/dev/null; }
  else
    echo "setup: please install with apt: ${need_apt[*]}" >&2
  fi
fi

PY=${PYTHON:-python3}
# torch + torchvision first, as a pair (timm needs torchvision; mismatched pairs fail to import).
if ! "$PY" -c 'import torch, torchvision' >/dev/null 2>&1; then
  "$PY" -m pip install -q "torch==2.14.1" "torchvision==0.29.1"
fi
"$PY" -m pip install -q -e ".[dev,ray]"  # ray: the Ray executor's tests run in CI too
echo "setup: done ($("$PY" -c 'import torch, timm; print("torch", torch.__version__, "timm", timm.__version__)'))"
