#!/usr/bin/env bash
# Train every experiment config in turn (each an MLflow run in experiment "claimlens-experiments"),
# then compare them on the real-news gold test split. CPU: roughly 5-20 minutes per run.
#   bash benchmarks/run_experiments.sh [NAME ...]     (default: all of configs/experiments/)
set -euo pipefail
cd "$(dirname "$0")/.."
names=("$@")
[ ${#names[@]} -gt 0 ] || names=($(ls configs/experiments | sed 's/\.yaml$//'))
for name in "${names[@]}"; do
  echo "=== $name"
  .venv/bin/claimlens-train --config "configs/experiments/$name.yaml"
done
.venv/bin/python -m benchmarks.compare
