#!/usr/bin/env bash
# Writes the README's headline results from a default run directory of scripts/compare_losses.lua:
# the table (section "main", by scripts/report_compare.lua), the run's summary files into
# docs/runs/compare_default and its pictures into docs/img. The whole headline, on an idle machine:
#   build/fvl scripts/compare_losses.lua --out runs/compare-v4 && bash tools/headline_docs.sh runs/compare-v4
set -euo pipefail
cd "$(dirname "$0")/.."
FVL=${FVL:-build/fvl}
run=${1:?usage: bash tools/headline_docs.sh RUN_DIR}
[ -s "$run/results.json" ] || { echo "headline_docs: $run/results.json is missing (not a finished run)" >&2; exit 1; }
"$FVL" scripts/report_compare.lua "$run" --file README.md --section main
mkdir -p docs/runs/compare_default docs/img
for f in results.csv summary.csv results.json settings.json table.txt; do cp "$run/$f" docs/runs/compare_default/; done
for f in features_sphere.png boundaries.png roc.png norms.png; do
  if [ -s "$run/$f" ]; then cp "$run/$f" docs/img/; else echo "headline_docs: $run has no $f" >&2; fi
done
echo "headline_docs: README.md section main, docs/runs/compare_default and docs/img written from $run" >&2
