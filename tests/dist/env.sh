# Sourced by tests/cli/dist_*.sh: what OpenMPI needs to run several ranks on one machine in CI
# (as root, in a container, on 2 cores): run as root, oversubscribe, shared memory and loopback
# transports only (no network interfaces to probe), one thread per rank.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_btl=self,vader
export OMPI_MCA_btl_vader_single_copy_mechanism=none
export OMPI_MCA_oob_tcp_if_include=lo
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_hwloc_base_binding_policy=none
export FVL_THREADS=1
MPIRUN=$(command -v mpirun) || { echo "FAIL: mpirun not found (apt-get install -y openmpi-bin)"; exit 1; }
# mpirun NP ARGS...: bounded, so a hang fails the test instead of blocking ctest. Under the
# sanitizer build the ranks keep ASan's memory checks but not LeakSanitizer: OpenMPI unloads its
# components (dlclose) at MPI_Finalize, and what they keep allocated until exit is reported
# with no frame to suppress by name (the same scripts in a plain process keep leak checking).
mpirun_np() {
  local np=$1; shift
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    timeout 120 "$MPIRUN" --oversubscribe -np "$np" -x FVL_THREADS -x ASAN_OPTIONS -x LSAN_OPTIONS \
    -x UBSAN_OPTIONS "$@"
}
fails=0
# on_ranks FVL SCRIPT PATTERN: SCRIPT in a plain process and under -np 2 and 3; each run must
# succeed and print PATTERN with NP in place of %d
on_ranks() {
  local fvl=$1 script=$2 pat=$3 np out rc
  for np in 1 2 3; do
    if [ "$np" = 1 ]; then out=$("$fvl" "$script" 2>&1)
    else out=$(mpirun_np "$np" "$fvl" "$script" 2>&1); fi
    rc=$?
    # shellcheck disable=SC2059
    if [ $rc -ne 0 ] || ! grep -q "$(printf "$pat" "$np")" <<<"$out"; then
      echo "FAIL: $script on $np ranks (rc $rc)"; echo "$out" | tail -20; fails=$((fails + 1))
    else
      grep "$(printf "$pat" "$np")" <<<"$out"
    fi
  done
}
