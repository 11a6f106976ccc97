#!/usr/bin/env bash
# Sharded heads and Partial FC under mpirun -np 2 and -np 3 (uneven class split) against the
# same heads in one process: loss, dX, gathered dW, SGD steps, state (tests/dist/heads_check.lua).
# usage (from the repo root): bash tests/cli/dist_heads.sh /path/to/fvl builddir
set -u
FVL=${1:?usage: bash tests/cli/dist_heads.sh /path/to/fvl builddir}
case $FVL in /*) ;; *) FVL=$PWD/$FVL ;; esac
. "$(dirname "$0")/../dist/env.sh"
on_ranks "$FVL" tests/dist/heads_check.lua "^ok [0-9]* checks on %d ranks"
[ $fails -eq 0 ] && echo "dist_heads: all passed"
exit $fails
