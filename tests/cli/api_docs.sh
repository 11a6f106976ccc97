#!/usr/bin/env bash
# docs/api.md and lua/fvl/apidoc.lua are generated from the doc comments in the sources by
# tools/gen_api.lua: this test regenerates them into a temporary directory and fails when the
# committed copies differ (run `build/fvl tools/gen_api.lua`),
# then checks that the reference holds what users look up first.
# usage (from the repo root): bash tests/cli/api_docs.sh /path/to/fvl builddir
set -u
FVL=${1:?usage: bash tests/cli/api_docs.sh /path/to/fvl builddir}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/docs" "$tmp/lua/fvl"
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
"$FVL" tools/gen_api.lua --root . --out "$tmp" >"$tmp/log" 2>&1 || fail "gen_api.lua failed: $(cat "$tmp/log")"
for f in docs/api.md lua/fvl/apidoc.lua; do
  if ! diff -u "$f" "$tmp/$f" >"$tmp/diff"; then
    fail "$f is out of date with the doc comments; regenerate it with: build/fvl tools/gen_api.lua"
    head -40 "$tmp/diff"
  fi
done
# what users look up first: constructors, matmul (C doc comments), heads with their defaults,
# data readers, evaluation
for name in fvl.tensor fvl.zeros fvl.randn fvl.matmul fvl.loss.arcface fvl.loss.cosface \
            fvl.data.fashion_mnist fvl.data.synthetic_faces fvl.data.loader fvl.eval.verify; do
  grep -qF "### \`$name\`" docs/api.md || fail "docs/api.md has no entry for $name"
done
awk '/^### `fvl.loss.arcface`/{p=1; next} /^### /{p=0} p' docs/api.md >"$tmp/arc"
grep -q '^  s = 64$' "$tmp/arc" && grep -q '^  m = 0.5$' "$tmp/arc" ||
  fail "fvl.loss.arcface lacks its defaults s = 64, m = 0.5: $(cat "$tmp/arc")"
# every entry of the generated module is in docs/api.md and the lookup works in the program
"$FVL" -e '
  local a = require "fvl.help"
  assert(#a.names > 100, "only " .. #a.names .. " entries")
  assert(a.lookup("fvl.matmul"):find("fvl.matmul(a, b)", 1, true))
  assert(a.lookup("loss.arcface", fvl.loss.arcface):find("m = 0.5", 1, true))
  assert(a.lookup("mm", fvl.matmul):find("fvl.matmul", 1, true), "lookup by value")
  assert(a.lookup("nothing_here", {}) == nil)
  for _, h in ipairs(fvl.loss.names()) do
    assert(a.entries["fvl.loss." .. h], "no entry for the loss head fvl.loss." .. h)
  end' >"$tmp/lk" 2>&1 || fail "fvl.help lookup: $(cat "$tmp/lk")"
# every entry (or group of entries sharing one signature block) has text after its signatures:
# a signature alone says nothing of defaults, results or errors
awk '/^### `/{ if (after) { if (prose == 0) print names; names = ""; after = 0; prose = 0 }
               names = names " " $2; next }
     /^## /{ if (after && prose == 0) print names; names = ""; after = 0; prose = 0; next }
     /^```/{ code = !code; if (!code && names != "") after = 1; next }
     !code && after && NF { prose++ }
     END { if (after && prose == 0) print names }' docs/api.md >"$tmp/bare"
[ -s "$tmp/bare" ] && fail "docs/api.md entries with a signature but no text (write a doc comment at the source):$(tr '\n' ' ' <"$tmp/bare")"
[ $fails == 0 ] && echo "api_docs: ok" && exit 0
exit 1
