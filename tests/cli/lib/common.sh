# tests/cli/lib/common.sh — the preamble and the tally shared by the CLI tests that source it:
#   . "$(dirname "$0")/lib/common.sh"; cli_init NAME.sh "$@"   ...checks...   cli_done
# cli_init: FVL from $1 (made absolute), a temporary directory $tmp removed on exit, no inherited
# thread count or LUA_INIT, the counters. check 'CONDITION' 'MESSAGE' counts a pass or a failure.
cli_init() {
  CLI_NAME=$1
  shift
  FVL=${1:?usage: bash tests/cli/$CLI_NAME /path/to/fvl builddir}
  case $FVL in /*) ;; *) FVL=$PWD/$FVL ;; esac
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  unset FVL_THREADS LUA_INIT LUA_INIT_5_4
  fails=0
  pass=0
}
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { pass=$((pass + 1)); }
check() { if eval "$1"; then ok; else fail "$2"; fi; }
# the summary line; the script's status is that of its last command
cli_done() {
  echo "$CLI_NAME: $pass passed, $fails failed"
  [ $fails == 0 ]
}
