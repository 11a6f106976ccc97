#!/usr/bin/env bash
# Checked labels across ranks in a plain process and under mpirun -np 2 and -np 3: a sharded
# head's step scans its labels once; fvl.dist.allgather of checked labels (tests/dist/labels_check.lua).
# usage (from the repo root): bash tests/cli/dist_labels.sh /path/to/fvl builddir
set -u
FVL=${1:?usage: bash tests/cli/dist_labels.sh /path/to/fvl builddir}
case $FVL in /*) ;; *) FVL=$PWD/$FVL ;; esac
. "$(dirname "$0")/../dist/env.sh"
on_ranks "$FVL" tests/dist/labels_check.lua "^labels ok [0-9]* checks on %d ranks"
[ $fails -eq 0 ] && echo "dist_labels: all passed"
exit $fails
