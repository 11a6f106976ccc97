#!/usr/bin/env bash
# Why ArcFace and NPCFace keep two or three class centres within a few degrees in the default
# 4-D Fashion-MNIST embedding (docs/experiments.md, section "merge"): the default recipe with
# one change per row, ArcFace and NPCFace only, 3 seeds, the Fashion-MNIST part only (2,000
# steps; ~30 s a row with 2 jobs on an idle machine; the last row, ArcFace alone with 6,000
# steps, ~45 s). A finished row (its results.json exists) is
# not run again, so the script resumes.
# Then the table of scripts/ambiguous_pair.lua (section "pair").
#   bash tools/merge_ablation.sh    (FVL=path/to/fvl to use another build, SCRIPTS=dir to run a
#                                    copy of scripts/)
set -euo pipefail
cd "$(dirname "$0")/.."
FVL=${FVL:-build/fvl}
# every recipe option spelled out, so the rows do not depend on the script's defaults
COMMON="--syn-steps 0 --seeds 3 --jobs 2 --inputs standard --bn noaffine --scale 32 --head-wd 0.0005"
BASE="--heads arcface,npcface --lr 0.1 --warmup 0.05 --fm-scale 16 --fm-margin 1 --head-lr 1 --margin-warmup 0 --fm-dim 4"
# directory | the options that differ from BASE (a later option overrides BASE's)
ROWS=(
  "runs/merge/base|"
  "runs/merge/margin0.5|--fm-margin 0.5"
  "runs/merge/warmup0.2|--warmup 0.2"
  "runs/merge/mwarm0.3|--margin-warmup 0.3"
  "runs/merge/lr0.03|--lr 0.03"
  "runs/merge/dim8|--fm-dim 8"
  "runs/merge/steps6000|--heads arcface --fm-steps 6000"
)
dirs=()
for row in "${ROWS[@]}"; do
  dir=${row%%|*}
  dirs+=("$dir")
  [ -s "$dir/results.json" ] && continue
  change=${row#*|}
  base=" $BASE "
  for flag in $change; do   # an option the row changes is dropped from BASE with its value
    case $flag in --*) base=$(sed -E "s/ $flag [^ ]+ / /" <<<"$base") ;; esac
  done
  read -r -a opts <<<"$COMMON $base $change"
  "$FVL" ${SCRIPTS:-scripts}/compare_losses.lua "${opts[@]}" --out "$dir" >&2
done
"$FVL" ${SCRIPTS:-scripts}/report_compare.lua --totals \
  --columns fmnist_acc,fmnist_collapsed,fmnist_merged_pairs,fmnist_min_recall,fmnist_min_centre_angle \
  "${dirs[@]}" --file docs/experiments.md --section merge
# the same question without a backbone: two classes that share their samples (seconds)
"$FVL" ${SCRIPTS:-scripts}/ambiguous_pair.lua --file docs/experiments.md --section pair
