#!/usr/bin/env bash
# fvl.dist collectives in a plain process (a world of size 1, MPI not initialised) and under
# mpirun -np 2 and -np 3 (tests/dist/collectives.lua).
# usage (from the repo root): bash tests/cli/dist_collectives.sh /path/to/fvl builddir
set -u
FVL=${1:?usage: bash tests/cli/dist_collectives.sh /path/to/fvl builddir}
case $FVL in /*) ;; *) FVL=$PWD/$FVL ;; esac
. "$(dirname "$0")/../dist/env.sh"
on_ranks "$FVL" tests/dist/collectives.lua "^collectives ok on %d ranks"
# a plain process never starts MPI: rank 0 of 1
out=$("$FVL" -e 'print(fvl.dist.rank(), fvl.dist.size(), fvl.dist.active())' 2>&1)
[ "$out" = "0	1	false" ] || { echo "FAIL: plain process: '$out'"; fails=$((fails + 1)); }
[ $fails -eq 0 ] && echo "dist_collectives: all passed"
exit $fails
