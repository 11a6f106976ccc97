#!/usr/bin/env bash
# cmake --install into a temporary prefix: the program, the man page, the docs, and the Lua
# module in Lua 5.4's C path; then, from outside the source tree, the installed fvl runs a script
# and stock lua5.4 finds `require "fvl"` there.
# usage (from the repo root): bash tests/cli/install.sh /path/to/fvl builddir
set -u
BUILD=${2:?usage: bash tests/cli/install.sh /path/to/fvl builddir}
case $BUILD in /*) ;; *) BUILD=$PWD/$BUILD ;; esac
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
P="$tmp/prefix"
cmake --install "$BUILD" --prefix "$P" >"$tmp/install.log" 2>&1 || { fail "cmake --install"; cat "$tmp/install.log"; exit 1; }

[ -x "$P/bin/fvl" ] || fail "no bin/fvl"
[ -f "$P/share/man/man1/fvl.1" ] && grep -q '^\.TH FVL 1' "$P/share/man/man1/fvl.1" || fail "no man page share/man/man1/fvl.1"
for d in README.md DEVELOPERS.md LICENSE docs/training.md examples/arc_vs_cos.lua; do
  [ -f "$P/share/doc/FaceVerLoss/$d" ] || fail "no share/doc/FaceVerLoss/$d"
done
mod=$(find "$P" -name fvl.so | head -1)
case $mod in */lua/5.4/fvl.so) ;; *) fail "fvl.so not in a lua/5.4 directory: '$mod'" ;; esac
[ -f "$(dirname "$mod")/fvl_engine.so" ] || fail "fvl_engine.so not beside fvl.so"

# outside the tree, nothing from the build directory on any path
cd "$tmp"
cat >"$tmp/s.lua" <<'LUA'
fvl.manual_seed(1)
local x = fvl.randn(4, 3)
print(string.format("ok %d %.4f", x:numel(), (x * x):sum():item()))
LUA
out=$(env -u LUA_PATH -u LUA_CPATH "$P/bin/fvl" "$tmp/s.lua" 2>&1); rc=$?
[ $rc = 0 ] && [[ $out == "ok 12 "* ]] || fail "installed fvl: rc=$rc '$out'"
v=$("$P/bin/fvl" --version 2>&1) && [[ $v == "fvl (FaceVerLoss) "* ]] || fail "installed fvl --version: '$v'"
# the REPL's help from the installed program (no source tree)
out=$(printf '1+1\n' | env -u LUA_PATH -u LUA_CPATH FVL_HISTORY= "$P/bin/fvl" -i 2>&1); rc=$?
[ $rc = 0 ] && [[ $out == *2* ]] || fail "installed fvl -i: rc=$rc '$out'"

# stock lua5.4: an ASan build's module cannot be loaded by an uninstrumented interpreter
if grep -q '^FVL_SANITIZE:BOOL=ON' "$BUILD/CMakeCache.txt" 2>/dev/null; then
  echo "install.sh: sanitizer build, stock lua5.4 part skipped"
elif command -v lua5.4 >/dev/null; then
  ref=$("$P/bin/fvl" -e 'fvl.manual_seed(1); local x = fvl.randn(4, 3); print(string.format("%.4f", (x * x):sum():item()))' 2>&1)
  got=$(env -u LUA_PATH LUA_CPATH="$(dirname "$mod")/?.so;;" lua5.4 -e '
    local fvl = require "fvl"
    fvl.manual_seed(1)
    local x = fvl.randn(4, 3)
    print(string.format("%.4f", (x * x):sum():item()))' 2>&1); rc=$?
  [ $rc = 0 ] && [ "$got" = "$ref" ] || fail "lua5.4 require \"fvl\" from the install: rc=$rc '$got' (fvl: '$ref')"
  got=$(env -u LUA_PATH LUA_CPATH="$(dirname "$mod")/?.so;;" lua5.4 -e 'require "fvl"; local c = require "fvl.cli"; print(type(c.parser))' 2>&1)
  [ "$got" = "function" ] || fail "lua5.4: require \"fvl.cli\" after fvl: '$got'"
  # the embedded Lua library from the installed module: a loss head's training step, and the
  # API reference the REPL's `? name` prints
  got=$(env -u LUA_PATH LUA_CPATH="$(dirname "$mod")/?.so;;" lua5.4 -e '
    local fvl = require "fvl"
    fvl.manual_seed(2)
    local h = fvl.loss.arcface { dim = 8, classes = 5 }
    local x = fvl.randn(4, 8)
    x:requires_grad()
    h(x, fvl.tensor({ 1, 2, 3, 4 }, "int32")):backward()
    local doc = require("fvl.help").lookup("fvl.loss.arcface")
    print(x.grad:size(1), h.weight.grad:size(1), doc and doc:match("m = 0%.5") or "no doc")' 2>&1)
  [ "$got" = "4	5	m = 0.5" ] || fail "lua5.4: a head step and fvl.help from the install: '$got'"
fi
[ $fails = 0 ] && echo "install: all passed" || { echo "install: $fails failed"; exit 1; }
