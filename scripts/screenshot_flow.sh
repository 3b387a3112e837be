#!/usr/bin/env bash
# The README's flow, start to end, on a throw-away clone of this checkout, then the screenshots of
# every dashboard page and of the last nightly report into this checkout's docs/screenshots/.
# Needs `dvc repro` done here first (the clone checks its outputs out of this checkout's DVC cache).
# Usage: bash scripts/screenshot_flow.sh [WORKDIR]   (default: a new temporary folder)
set -euo pipefail
SRC="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${1:-$(mktemp -d)}/flow"
[ -d "$SRC/.dvc/cache" ] || { echo "screenshot_flow: no DVC cache in $SRC: run dvc repro there first" >&2; exit 1; }
rm -rf "$WORK" && git clone -q "$SRC" "$WORK" && cd "$WORK"
dvc cache dir --local "$SRC/.dvc/cache" && dvc checkout -q
export LPT_DB_URL="sqlite:///$WORK/lpt_store.db"
step() { echo "== $*" >&2; }
step "ingest the pipeline's results, deploy lpt"
lpt ingest --results results --models models --shifts data/shifts/eval > /dev/null
lpt models promote lpt --reason "first deployment"
step "two nights with labelled generated batches"
lpt shift make --data data/prepared/target --corruption fog --severity 3 --size 500 --seed 1
lpt scheduler run-now > /dev/null
lpt shift make --data data/prepared/target --corruption contrast --severity 2 --size 500 --seed 2
lpt scheduler run-now > /dev/null
step "a night with two production batches without labels"
python - "$WORK" <<'PY'
import sys
import numpy as np, pandas as pd
from lpt_core.data.store import load_prepared
from lpt_core.shifts import corrupt
out = sys.argv[1]
test = load_prepared("data/prepared/target").test
rng = np.random.default_rng(11)
rows = rng.choice(len(test.labels), 300, replace=False)
np.save(f"{out}/prod_snow.npy", corrupt(np.asarray(test.images[rows]), "snow", 2, 3))  # snow s2, 300 images
sample = np.sort(rng.choice(300, 120, replace=False))  # labels that arrive later for 120 of them
pd.DataFrame({"index": sample, "label": np.asarray(test.labels[rows])[sample]}).to_csv(f"{out}/prod_snow_labels.csv", index=False)
y = np.asarray(test.labels)  # a pure label shift: 40 % class 4 (the rarest training class)
mix = np.concatenate([rng.choice(np.flatnonzero(y == 4), 80, replace=False), rng.choice(np.flatnonzero(y != 4), 120, replace=False)])
rng.shuffle(mix)
np.save(f"{out}/prod_tailmix.npy", np.asarray(test.images[mix]))
PY
lpt shift add --unlabeled --data data/prepared/target "$WORK/prod_snow.npy" --corruption snow --severity 2
lpt shift add --unlabeled --data data/prepared/target "$WORK/prod_tailmix.npy"
lpt scheduler run-now > /dev/null
step "labels for 120 of the snow batch's images arrive; the next night measures them"
SNOW=$(lpt shift list --json | python -c "import json,sys; print([b['id'] for b in json.load(sys.stdin) if b['corruption'] == 'snow'][0])")
lpt shift label "$SNOW" "$WORK/prod_snow_labels.csv"
lpt scheduler run-now > /dev/null
lpt db counts
step "screenshots"
python scripts/browser_check.py --out "$SRC/docs/screenshots"
echo "screenshot_flow: store $WORK/lpt_store.db, reports in $WORK/reports, screenshots in $SRC/docs/screenshots" >&2
