#!/usr/bin/env bash
# The test suite (CPU, about 10 minutes on 2 cores): lint (ruff), type check (mypy), then pytest.
# Extra arguments go to pytest; LPT_SKIP_LINT=1 skips the two static checks.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${LPT_SKIP_LINT:-0}" != 1 ]]; then
  python3 -m ruff check lpt_core app dashboards tests
  python3 -m mypy
fi
exec python3 -m pytest -q "$@"
