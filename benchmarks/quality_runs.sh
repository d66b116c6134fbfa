#!/usr/bin/env bash
# Real-data quality runs (issue: published-level quality): the three-task model, then each task alone
# with the same per-task budget, then the frozen-embedding baselines. Results land in runs/quality/.
#   bash benchmarks/quality_runs.sh [DATA_DIR] [STEPS]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA_DIR=${1:-../shared/data}
STEPS=${2:-2000}
PY=${PYTHON:-.venv/bin/python}
OUT=runs/quality
mkdir -p "$OUT"
run() {  # name, extra args...
  local name=$1; shift
  echo "== $name: $(date -u +%FT%TZ)"
  /usr/bin/time -v "$PY" flows/pipeline.py --config data/configs/three_task.yaml --data-dir "$DATA_DIR" \
    --out "$OUT/$name" --set train.max_steps="$STEPS" --json "$@" > "$OUT/$name.json" 2> "$OUT/$name.log"
  grep -E "Elapsed|Maximum resident" "$OUT/$name.log" || true
}
run multi
for task in topic sentiment ner; do run "single-$task" --tasks "$task"; done
echo "== baselines: $(date -u +%FT%TZ)"
"$PY" benchmarks/frozen_baseline.py --tokenized "$OUT/multi/tokenized" > "$OUT/baselines.json"
echo "== done: $(date -u +%FT%TZ)"
