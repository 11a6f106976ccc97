#!/usr/bin/env bash
# scripts/bench/blk_gemm_ab.sh — the own block GEMM's changes, A/B on a whole training step.
#
#   usage: bash scripts/bench/blk_gemm_ab.sh [rounds=3] [C=100000] [heads=arcface] [builddir=build]
#   (on a shared machine: flock /work/wt/bench.lock bash scripts/bench/blk_gemm_ab.sh ...)
#
# Runs scripts/bench/heads.lua (--torch 0 --twopass 0, 2 threads, 3 steps) alternately with
#   before: FVL_BLK_GEMM_TAIL=0 FVL_BLK_GEMM_ROWS=0 (the last rows of M through the 12-row kernel,
#           the dX GEMM's W block packed in 32-column strips: the kernel as it was)
#   after:  the defaults
# and prints each run's ms/step, GFLOP/s and % of the FMA peak with the load average, then the
# best of each. Both give the same bits; only time differs. A loaded machine makes every figure
# noisy: read the ratio of runs taken minutes apart with care.
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=3
C=100000
heads=arcface
builddir=build
for a in "$@"; do
  case "$a" in
    rounds=*) rounds=${a#rounds=} ;;
    C=*) C=${a#C=} ;;
    heads=*) heads=${a#heads=} ;;
    builddir=*) builddir=${a#builddir=} ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "blk_gemm_ab.sh: unknown argument '$a' (expected rounds=N, C=N, heads=LIST, builddir=DIR)" >&2; exit 2 ;;
  esac
done
for v in "rounds:$rounds" "C:$C"; do
  case "${v#*:}" in ''|*[!0-9]*|0) echo "blk_gemm_ab.sh: ${v%%:*}: expected a positive integer, got '${v#*:}'" >&2; exit 2 ;; esac
done
[ -x "$builddir/fvl" ] || { echo "blk_gemm_ab.sh: $builddir/fvl not found (build first: cmake --build $builddir)" >&2; exit 2; }
declare -A best
for r in $(seq 1 "$rounds"); do
  for v in before after; do
    if [ "$v" = before ]; then envs=(FVL_BLK_GEMM_TAIL=0 FVL_BLK_GEMM_ROWS=0); else envs=(FVL_BLK_GEMM_TAIL=1); fi
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    out=$(env "${envs[@]}" "$builddir/fvl" scripts/bench/heads.lua --C "$C" --steps 3 --threads 2 \
            --heads "$heads" --torch 0 --twopass 0)
    echo "$out" | awk -v v="$v" -v r="$r" -v load="$load" -v C="$C" \
      '$2 == C { printf "round %d %-6s %-16s ms/step %8.1f  %6.1f GFLOP/s  %6s of peak  (load %s)\n", r, v, $1, $3, $13, $14, load }'
    for h in $(echo "$out" | awk -v C="$C" '$2 == C { print $1 ":" $3 }'); do
      k="$v ${h%%:*}"; ms=${h##*:}
      if [ -z "${best[$k]:-}" ] || awk -v a="$ms" -v b="${best[$k]}" 'BEGIN { exit !(a < b) }'; then best[$k]=$ms; fi
    done
  done
done
echo "best of $rounds:"
for k in "${!best[@]}"; do echo "  $k ${best[$k]} ms/step"; done | sort
echo "peak line of the last run: $(echo "$out" | grep '^FMA peak' | cut -c1-60)"
