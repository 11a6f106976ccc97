#!/usr/bin/env bash
# The ablation that chose the recipe of scripts/compare_losses.lua (docs/experiments.md):
# the Fashion-MNIST part only (2-D embedding, 2,000 steps), 3 seeds, the seven normalised heads,
# one run directory per recipe under runs/recipe/, then the table written into
# docs/experiments.md (section "recipe") by scripts/report_compare.lua. A finished row (its
# results.json exists) is not run again, so the script resumes. About 21 tasks of ~12 s each per
# row on an idle core; run it under `nice` on a shared machine.
#   bash tools/recipe_ablation.sh [--jobs N]        (extra options go to every compare_losses run)
set -euo pipefail
cd "$(dirname "$0")/.."
FVL=${FVL:-build/fvl}
OUT=${OUT:-runs/recipe}
HEADS=cosface,arcface,mv_arc,curricularface,circle,discface,npcface
# name | options (everything else is the default recipe of compare_losses.lua)
ROWS=(
  "s16|--fm-scale 16 --fm-margin 1 --bn feature --head-lr 1"
  "s16-m0.4|--fm-scale 16 --fm-margin 0.4 --bn feature --head-lr 1"
  "s16-hlr0.1|--fm-scale 16 --fm-margin 1 --bn feature --head-lr 0.1"
  "s16-noaffine|--fm-scale 16 --fm-margin 1 --bn noaffine --head-lr 1"
)
dirs=()
for row in "${ROWS[@]}"; do
  name=${row%%|*}
  read -r -a opts <<<"${row#*|}"
  dirs+=("$OUT/$name")
  if [ -s "$OUT/$name/results.json" ]; then continue; fi
  "$FVL" scripts/compare_losses.lua --syn-steps 0 --heads "$HEADS" --seeds 3 "${opts[@]}" "$@" --out "$OUT/$name"
done
"$FVL" scripts/report_compare.lua "${dirs[@]}" --file docs/experiments.md --section recipe
