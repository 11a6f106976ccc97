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
# srun without an MPI plugin (several tasks, no PMI variables): a warning, then a world of one
out=$(env -u OMPI_COMM_WORLD_SIZE -u PMIX_RANK -u PMI_RANK -u PMI_SIZE SLURM_STEP_NUM_TASKS=4 \
  "$FVL" -e 'print(fvl.dist.size())' 2>&1)
grep -q "srun started 4 tasks but no MPI process manager" <<<"$out" && [ "$(tail -1 <<<"$out")" = 1 ] ||
  { echo "FAIL: srun without MPI: '$out'"; fails=$((fails + 1)); }
[ $fails -eq 0 ] && echo "dist_collectives: all passed"
exit $fails
