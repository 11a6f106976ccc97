#!/usr/bin/env bash
# fvl --help / -h / --version (exit 0, on stdout), and --help on every script in scripts/:
# usage on stdout, exit 0, before any work; a mistyped option is one line, no traceback.
# usage (from the repo root): bash tests/cli/help.sh /path/to/fvl builddir
set -u
FVL=${1:?usage: bash tests/cli/help.sh /path/to/fvl builddir}
case $FVL in /*) ;; *) FVL=$PWD/$FVL ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
pass=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { pass=$((pass + 1)); }

for opt in --help -h; do
  "$FVL" $opt >"$tmp/out" 2>"$tmp/err" </dev/null
  rc=$?
  [ $rc == 0 ] && ok || fail "fvl $opt exited $rc"
  grep -q "^usage: fvl \[options\] \[script \[args\]\]" "$tmp/out" && ok || fail "fvl $opt: no usage on stdout"
  grep -q -- "--version" "$tmp/out" && ok || fail "fvl $opt: usage does not list --version"
  [ -s "$tmp/err" ] && fail "fvl $opt wrote to stderr: $(head -c 300 "$tmp/err")" || ok
done
"$FVL" --version >"$tmp/out" 2>"$tmp/err" </dev/null
rc=$?
[ $rc == 0 ] && ok || fail "fvl --version exited $rc"
grep -qE "^fvl \(FaceVerLoss\) [0-9]+\.[0-9]+\.[0-9]+" "$tmp/out" && ok || fail "fvl --version: '$(cat "$tmp/out")'"
"$FVL" --bogus >"$tmp/out" 2>"$tmp/err" </dev/null
[ $? == 1 ] && grep -q "unrecognized option '--bogus'" "$tmp/err" && ok || fail "fvl --bogus: $(cat "$tmp/err")"
# options after the script belong to the script
echo 'print(arg[1])' >"$tmp/a.lua"
"$FVL" "$tmp/a.lua" --help >"$tmp/out" 2>&1
[ "$(cat "$tmp/out")" == "--help" ] && ok || fail "fvl script --help: the script did not get --help"

# every script in scripts/ (examples and benches included): --help prints usage and exits 0
for s in $(find scripts -name '*.lua' -not -path 'scripts/configs/*' | sort); do   # configs are tables, not scripts
  timeout 20 "$FVL" "$s" --help >"$tmp/out" 2>"$tmp/err" </dev/null
  rc=$?
  if [ $rc == 0 ] && grep -qi "^usage:" "$tmp/out"; then ok; else
    fail "$s --help: exit $rc, stdout '$(head -c 200 "$tmp/out")', stderr '$(head -c 300 "$tmp/err")'"
  fi
done
# the shell and Python benches in scripts/ answer --help too (exit 0, usage on stdout); the
# Python peers import PyTorch (Debian python3-torch, a bench-only dependency), skipped without it
for s in $(find scripts -name '*.sh' | sort); do
  timeout 20 bash "$s" --help >"$tmp/out" 2>"$tmp/err" </dev/null
  rc=$?
  if [ $rc == 0 ] && grep -qi "usage\|$(basename "$s")" "$tmp/out"; then ok; else
    fail "$s --help: exit $rc, stdout '$(head -c 200 "$tmp/out")', stderr '$(head -c 300 "$tmp/err")'"
  fi
done
if /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then
  for s in $(find scripts -name '*.py' | sort); do
    timeout 60 /usr/bin/python3 "$s" --help >"$tmp/out" 2>"$tmp/err" </dev/null
    rc=$?
    if [ $rc == 0 ] && grep -qi "^usage:" "$tmp/out"; then ok; else
      fail "$s --help: exit $rc, stdout '$(head -c 200 "$tmp/out")', stderr '$(head -c 300 "$tmp/err")'"
    fi
  done
else
  echo "help.sh: /usr/bin/python3 has no torch: the Python bench peers' --help not checked"
fi
# typed options: a number option given a word is one line naming the option, no traceback
for so in scripts/compare_losses.lua:seed scripts/bench/heads.lua:steps scripts/sweep_margins.lua:workers; do
  s=${so%%:*}; o=${so#*:}
  [ -f "$s" ] || continue
  timeout 20 "$FVL" "$s" --$o abc >"$tmp/out" 2>"$tmp/err" </dev/null
  rc=$?
  [ $rc == 1 ] && ok || fail "$s --$o abc exited $rc"
  grep -q "$o: expected a number" "$tmp/err" && ok || fail "$s --$o abc: '$(head -c 300 "$tmp/err")'"
  grep -q "traceback" "$tmp/err" && fail "$s --$o abc printed a traceback" || ok
done

echo "help.sh: $pass passed, $fails failed"
[ $fails == 0 ]
