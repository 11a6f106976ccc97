#!/usr/bin/env bash
# A rank that dies (SIGKILL) or fails (a Lua error) while the others wait in a collective: the
# job ends within seconds with a non-zero status and a message, and no rank goes on.
# usage (from the repo root): bash tests/cli/dist_fail.sh /path/to/fvl builddir
set -u
FVL=${1:?usage: bash tests/cli/dist_fail.sh /path/to/fvl builddir}
case $FVL in /*) ;; *) FVL=$PWD/$FVL ;; esac
. "$(dirname "$0")/../dist/env.sh"
check() {   # MODE EXPECTED_MESSAGE
  local start=$SECONDS
  out=$(mpirun_np 3 "$FVL" tests/dist/die.lua "$1" 2>&1)
  local rc=$? took=$((SECONDS - start))
  if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then echo "FAIL: $1: exit status $rc (expected a failure, not 0 or a timeout)"; fails=$((fails + 1)); fi
  if [ $took -gt 60 ]; then echo "FAIL: $1: the job took ${took}s to stop"; fails=$((fails + 1)); fi
  if grep -q "survived" <<<"$out"; then echo "FAIL: $1: a rank went on after rank 1 died"; fails=$((fails + 1)); fi
  if ! grep -q "$2" <<<"$out"; then echo "FAIL: $1: no '$2' in the output:"; echo "$out" | tail -15; fails=$((fails + 1)); fi
  if ! grep -q "stopped by the launcher" <<<"$out"; then echo "FAIL: $1: the other ranks did not say why they stop"; fails=$((fails + 1)); fi
}
check kill "exited on signal 9"
check error "rank 1 of 3 exits with status 1: aborting the job"
[ $fails -eq 0 ] && echo "dist_fail: all passed"
exit $fails
