#!/usr/bin/env bash
# Why Softmax and Center need the BatchNorm's learned scale on the 64-D open-set embedding
# (docs/experiments.md, section "bnscale"): the synthetic part only (3,000 identities × 8,
# 1,000 steps, 3 seeds), Softmax, Center and ArcFace (a normalised head, the control), with the
# BatchNorm's scale γ fixed at 1, 2 and 4 (--syn-bn insightface --syn-bn-scale γ: |x| ≈ 8γ)
# against the learned one (--syn-bn feature), and the fixed-scale BatchNorm without scale and
# shift with the head's weight decay off (|W| free to grow). A finished row (its results.json
# exists) is not run again. ~9 s a task on an idle core.
#   bash tools/bn_scale_ablation.sh    (FVL=path/to/fvl to use another build, JOBS=2, SCRIPTS=dir
#                                       to run a copy of scripts/)
set -euo pipefail
cd "$(dirname "$0")/.."
FVL=${FVL:-build/fvl}
SCRIPTS=${SCRIPTS:-scripts}
COMMON="--fm-steps 0 --seeds 3 --jobs ${JOBS:-2} --inputs standard --bn noaffine --lr 0.1 --warmup 0.05 --fm-scale 16 --fm-margin 1 --scale 32 --head-lr 1 --margin-warmup 0 --fm-dim 4"
H3=softmax,center,arcface
# directory | options
ROWS=(
  "runs/bnscale/g1|--heads $H3 --head-wd 0.0005 --syn-bn insightface --syn-bn-scale 1"
  "runs/bnscale/g2|--heads $H3 --head-wd 0.0005 --syn-bn insightface --syn-bn-scale 2"
  "runs/bnscale/g4|--heads $H3 --head-wd 0.0005 --syn-bn insightface --syn-bn-scale 4"
  "runs/bnscale/noaffine-hwd0|--heads softmax,center --head-wd 0 --syn-bn noaffine"
  "runs/bnscale/learned|--heads $H3 --head-wd 0.0005 --syn-bn feature"
)
dirs=()
for row in "${ROWS[@]}"; do
  dir=${row%%|*}
  dirs+=("$dir")
  [ -s "$dir/results.json" ] && continue
  read -r -a opts <<<"$COMMON ${row#*|}"
  "$FVL" "$SCRIPTS"/compare_losses.lua "${opts[@]}" --out "$dir" >&2
done
"$FVL" "$SCRIPTS"/report_compare.lua --columns verif_acc,tar_at_far_1e-3,tar_at_far_1e-2,syn_norm_mean,syn_centre_norm \
  "${dirs[@]}" --file docs/experiments.md --section bnscale
