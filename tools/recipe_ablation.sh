#!/usr/bin/env bash
# The ablation that chose the recipe of scripts/compare_losses.lua (docs/experiments.md, section
# "recipe", and "recipe3" for the changes tried on the chosen recipe): the Fashion-MNIST part only
# (2-D embedding unless the row says --fm-dim, 2,000 steps), 3 seeds, the seven normalised heads,
# one run directory per recipe, then the tables written into docs/experiments.md by
# scripts/report_compare.lua, and the free-feature tables of scripts/loss_optimum.lua (sections
# "optimum", "optimum-warmup", "optimum-circle"). A finished row (its results.json exists) is
# not run again, so the script resumes. Each row is 21 tasks of ~12 s on an idle core (2 jobs:
# ~2 minutes a row); on a shared machine run it under `nice -n 5`.
#   bash tools/recipe_ablation.sh            (FVL=path/to/fvl to use another build)
set -euo pipefail
cd "$(dirname "$0")/.."
FVL=${FVL:-build/fvl}
H7=cosface,arcface,mv_arc,curricularface,circle,discface,npcface
# directory | options: every recipe option spelled out, so the rows do not depend on defaults
COMMON="--syn-steps 0 --seeds 3 --jobs 2 --inputs standard --lr 0.1 --scale 32 --head-wd 0.0005 --margin-warmup 0"
ROWS=(
  "runs/ablation/fm-standard-feature|--heads cosface,arcface,curricularface,circle --bn feature --fm-scale 32 --fm-margin 1 --circle-gamma 256 --head-lr 1 --warmup 0.05"
  "runs/abl2/s16|--heads $H7 --bn feature --fm-scale 16 --fm-margin 1 --head-lr 1 --warmup 0.05"
  "runs/abl2/s16-hlr0.1|--heads $H7 --bn feature --fm-scale 16 --fm-margin 1 --head-lr 0.1 --warmup 0.05"
  "runs/abl2/s16-m0.4|--heads $H7 --bn feature --fm-scale 16 --fm-margin 0.4 --head-lr 1 --warmup 0.05"
  "runs/abl2/s16-noaffine|--heads $H7 --bn noaffine --fm-scale 16 --fm-margin 1 --head-lr 1 --warmup 0.05"
  "runs/abl2/s16-m0.4-noaffine|--heads $H7 --bn noaffine --fm-scale 16 --fm-margin 0.4 --head-lr 1 --warmup 0.05"
)
# step 3 (section recipe3): the chosen recipe (first row) with one change each, against the
# collapses it leaves
ROWS3=(
  "runs/abl2/s16-noaffine|--heads $H7 --bn noaffine --fm-scale 16 --fm-margin 1 --head-lr 1 --warmup 0.05"
  "runs/abl3/mwarm0.3|--heads $H7 --bn noaffine --fm-scale 16 --fm-margin 1 --head-lr 1 --warmup 0.05 --margin-warmup 0.3"
  "runs/abl3/warm0.2|--heads $H7 --bn noaffine --fm-scale 16 --fm-margin 1 --head-lr 1 --warmup 0.2"
  "runs/abl3/dim3|--heads $H7 --bn noaffine --fm-scale 16 --fm-margin 1 --head-lr 1 --warmup 0.05 --fm-dim 3"
  "runs/abl3/dim4|--heads $H7 --bn noaffine --fm-scale 16 --fm-margin 1 --head-lr 1 --warmup 0.05 --fm-dim 4"
  "runs/abl3/dim4-unnormalised|--heads softmax,sphereface,center --bn noaffine --fm-scale 16 --fm-margin 1 --head-lr 1 --warmup 0.05 --fm-dim 4"
)
# run the rows that have no results.json yet; print their directories
run_rows() {
  local row dir opts
  for row in "$@"; do
    dir=${row%%|*}
    read -r -a opts <<<"$COMMON ${row#*|}"
    echo "$dir"
    if [ -s "$dir/results.json" ]; then continue; fi
    "$FVL" scripts/compare_losses.lua "${opts[@]}" --out "$dir" >&2
  done
}
mapfile -t dirs < <(run_rows "${ROWS[@]}")
"$FVL" scripts/report_compare.lua --totals "${dirs[@]}" --file docs/experiments.md --section recipe
mapfile -t dirs < <(run_rows "${ROWS3[@]}")
"$FVL" scripts/report_compare.lua --totals "${dirs[@]}" --file docs/experiments.md --section recipe3
# the losses without a backbone (scripts/loss_optimum.lua: free features and centres, 5 random
# starts; seconds): where is each head's minimum in 2-D and 3-D, with and without a margin
# warm-up, and Circle's for several γ and m
"$FVL" scripts/loss_optimum.lua --heads softmax,$H7 --dims 2,3 --seeds 5 --file docs/experiments.md --section optimum
"$FVL" scripts/loss_optimum.lua --heads $H7 --dims 2 --seeds 5 --margin-warmup 0.5 --file docs/experiments.md --section optimum-warmup
"$FVL" scripts/loss_optimum.lua --heads circle --dims 2,3,4,8 --seeds 5 --circle-gamma 16,64,256 --circle-m 0.25,0.4 \
  --file docs/experiments.md --section optimum-circle
