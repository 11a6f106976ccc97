#!/usr/bin/env bash
# scripts/bench/require.sh — the module in someone else's interpreter against the fvl program.
#
#   bash scripts/bench/require.sh [builddir=build] [reps=3]
#
# Times, in this one run, stock `lua5.4 -l fvl` (LUA_CPATH pointing at <builddir>/fvl.so) and
# `<builddir>/fvl` on the same workloads, alternating the two so that both see the same machine
# load, and keeps the best wall time of `reps` runs of each:
#   1. scripts/examples/arc_vs_cos.lua (ArcFace vs CosFace on synthetic identities)
#   2. scripts/bench/heads.lua --C 10000 --heads softmax,arcface,curricularface --steps 5
# ratio = lua5.4 time / fvl time; target <= 1.10 (the module loaded by any Lua runs as fast as
# the program: one OpenMP pool shared by the engine and OpenBLAS, no environment tricks).
# The machine may be shared: the load average is printed, and a loaded machine makes the
# figures noisy (best-of-N only removes part of it).
set -euo pipefail
cd "$(dirname "$0")/../.."
builddir=build
reps=3
for a in "$@"; do
  case "$a" in
    builddir=*) builddir=${a#builddir=} ;;
    reps=*) reps=${a#reps=} ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "require.sh: unknown argument '$a' (expected builddir=DIR, reps=N)" >&2; exit 2 ;;
  esac
done
case "$reps" in ''|*[!0-9]*|0) echo "require.sh: reps: expected a positive integer, got '$reps'" >&2; exit 2 ;; esac
fvl="$builddir/fvl"
[ -x "$fvl" ] || { echo "require.sh: $fvl not found (build first: cmake --build $builddir)" >&2; exit 2; }
[ -f "$builddir/fvl.so" ] || { echo "require.sh: $builddir/fvl.so not found" >&2; exit 2; }
command -v lua5.4 >/dev/null || { echo "require.sh: lua5.4 not found (apt-get install -y lua5.4)" >&2; exit 2; }
cpath="$(cd "$builddir" && pwd)/?.so;;"

now() { date +%s.%N; }
# best wall time of one command over reps runs; the command's output goes to /dev/null
declare -A best
run() {   # run KEY CMD...
  local key=$1; shift
  local t0 t1 dt
  t0=$(now)
  if ! "$@" >/dev/null 2>"/tmp/require_bench.$$.err"; then
    echo "require.sh: '$*' failed:" >&2; cat "/tmp/require_bench.$$.err" >&2; rm -f "/tmp/require_bench.$$.err"
    exit 1
  fi
  t1=$(now)
  dt=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
  if [ -z "${best[$key]:-}" ] || awk -v d="$dt" -v b="${best[$key]}" 'BEGIN { exit !(d < b) }'; then best[$key]=$dt; fi
}
trap 'rm -f /tmp/require_bench.$$.err' EXIT

echo "require.sh: lua5.4 -l fvl (LUA_CPATH=$builddir/?.so) against $fvl, best of $reps, $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
ex=scripts/examples/arc_vs_cos.lua
hd=(scripts/bench/heads.lua --C 10000 --heads softmax,arcface,curricularface --steps 5)
for _ in $(seq "$reps"); do
  run ex_fvl "$fvl" "$ex"
  run ex_lua env LUA_CPATH="$cpath" lua5.4 -l fvl "$ex"
  run hd_fvl "$fvl" "${hd[@]}"
  run hd_lua env LUA_CPATH="$cpath" lua5.4 -l fvl "${hd[@]}"
done
printf "%-40s %10s %10s %7s %7s\n" "workload" "fvl s" "lua5.4 s" "ratio" "target"
for w in ex hd; do
  name=$ex; [ $w = hd ] && name="${hd[*]}"
  f=${best[${w}_fvl]}; l=${best[${w}_lua]}
  r=$(awk -v l="$l" -v f="$f" 'BEGIN { printf "%.3f", l / f }')
  flag=""; awk -v r="$r" 'BEGIN { exit !(r > 1.10) }' && flag="  (over target)"
  printf "%-40s %10.2f %10.2f %7.3f %7s%s\n" "${name:0:40}" "$f" "$l" "$r" "1.10" "$flag"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg) (a loaded machine makes these figures noisy)"
