#!/usr/bin/env bash
# Sharded checkpoints: save under mpirun -np 3 (one shard per rank + header), resume on 3 ranks
# (equal to the uninterrupted run), refuse 2 ranks, gather into one single-process checkpoint.
# usage (from the repo root): bash tests/cli/dist_checkpoint.sh /path/to/fvl builddir
set -u
FVL=${1:?usage: bash tests/cli/dist_checkpoint.sh /path/to/fvl builddir}
case $FVL in /*) ;; *) FVL=$PWD/$FVL ;; esac
. "$(dirname "$0")/../dist/env.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
expect() {   # NP MODE PATTERN
  out=$(mpirun_np "$1" "$FVL" tests/dist/checkpoint_check.lua "$2" "$tmp" 2>&1)
  local rc=$?
  if [ $rc -ne 0 ] || ! grep -q "$3" <<<"$out"; then
    echo "FAIL: $2 on $1 ranks (rc $rc)"; echo "$out" | tail -15; fails=$((fails + 1))
  else
    grep "$3" <<<"$out"
  fi
}
expect 3 save "saved on 3 ranks"
expect 3 resume "resumed on 3 ranks"
expect 2 wrong_n "refused on 2 ranks"
[ $fails -eq 0 ] && echo "dist_checkpoint: all passed"
exit $fails
