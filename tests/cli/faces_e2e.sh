#!/usr/bin/env bash
# End-to-end: Fashion-MNIST → JPEG folder and .rec → loader → train → fvl.nn.save/load →
# .bin pack → fvl.eval.bin_pack (tests/cli/faces_e2e.lua), then scripts/verify.lua and
# scripts/embed.lua on the results, and their errors.
# usage (from the repo root): bash tests/cli/faces_e2e.sh /path/to/fvl builddir
set -u
FVL=${1:?usage: bash tests/cli/faces_e2e.sh /path/to/fvl builddir}
case $FVL in /*) ;; *) FVL=$PWD/$FVL ;; esac
if [ ! -e /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ] && [ -z "${FVL_FASHION_MNIST:-}" ]; then
  echo "SKIP: dataset-fashion-mnist is not installed"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }

"$FVL" tests/cli/faces_e2e.lua "$tmp" >"$tmp/out" 2>"$tmp/err" || { fail "faces_e2e.lua"; cat "$tmp/out" "$tmp/err"; }
cat "$tmp/out"

"$FVL" scripts/verify.lua "$tmp/model.npz" "$tmp/val.bin" "$tmp/val.bin" --batch 50 --json "$tmp/v.json" >"$tmp/vout" 2>"$tmp/verr" \
  || { fail "verify.lua"; cat "$tmp/verr"; }
grep -q "^val .* 150 " "$tmp/vout" || { fail "verify.lua table"; cat "$tmp/vout"; }
[ "$(grep -c '^val ' "$tmp/vout")" = 2 ] || fail "verify.lua: one row per pack"
grep -q '"accuracy"' "$tmp/v.json" || fail "verify.lua json"
cat "$tmp/vout"

"$FVL" scripts/embed.lua "$tmp/model.npz" "$tmp/faces" "$tmp/emb.npy" >"$tmp/eout" 2>"$tmp/eerr" \
  || { fail "embed.lua folder"; cat "$tmp/eerr"; }
"$FVL" scripts/embed.lua "$tmp/model.npz" "$tmp/rec/train.rec" "$tmp/embr.npy" --no-flip >>"$tmp/eout" 2>"$tmp/eerr" \
  || { fail "embed.lua rec"; cat "$tmp/eerr"; }
cat "$tmp/eout"
"$FVL" -e "
local e = assert(fvl.load('$tmp/emb.npy')); local y = assert(fvl.load('$tmp/emb-labels.npy'))
assert(e:size(1) == 400 and e:size(2) == 16 and y:size(1) == 400, 'shapes')
assert(math.abs(e:norm(2, 2):mean():item() - 1) < 1e-4, 'normalised')
local er = assert(fvl.load('$tmp/embr.npy')); assert(er:size(1) == 400)
local n = 0; for _ in io.lines('$tmp/emb-paths.txt') do n = n + 1 end; assert(n == 400, 'paths')
" || fail "embed.lua outputs"
head -1 "$tmp/emb-paths.txt" | grep -q "faces/class_01/" || fail "embed.lua paths"

# errors: exit status 1 and a message naming the problem
"$FVL" scripts/verify.lua "$tmp/model.npz" >/dev/null 2>"$tmp/e1"; [ $? = 1 ] && grep -qi usage "$tmp/e1" || fail "verify.lua without packs"
"$FVL" scripts/verify.lua --help >"$tmp/h1" 2>&1; [ $? = 0 ] && grep -q "packs" "$tmp/h1" || fail "verify.lua --help"
"$FVL" scripts/verify.lua "$tmp/model.npz" "$tmp/val.bin" --batch x >/dev/null 2>"$tmp/e6"; [ $? = 1 ] && grep -q "batch: expected a number" "$tmp/e6" || fail "verify.lua --batch x"
"$FVL" scripts/embed.lua --help >"$tmp/h2" 2>&1; [ $? = 0 ] || fail "embed.lua --help"
"$FVL" scripts/verify.lua "$tmp/model.npz" "$tmp/nope.bin" >/dev/null 2>"$tmp/e2"; [ $? = 1 ] && grep -q "nope.bin" "$tmp/e2" || fail "verify.lua missing pack"
"$FVL" scripts/verify.lua "$tmp/val.bin" "$tmp/val.bin" >/dev/null 2>"$tmp/e3"; [ $? = 1 ] && grep -q "__model__\|not a .npz\|nn.load" "$tmp/e3" || { fail "verify.lua non-model"; cat "$tmp/e3"; }
"$FVL" scripts/embed.lua "$tmp/model.npz" "$tmp/faces" "$tmp/x.txt" >/dev/null 2>"$tmp/e4"; [ $? = 1 ] && grep -q ".npy" "$tmp/e4" || fail "embed.lua bad OUT"
"$FVL" scripts/embed.lua "$tmp/model.npz" "$tmp/nofolder" "$tmp/x.npy" >/dev/null 2>"$tmp/e5"; [ $? = 1 ] && grep -q "nofolder" "$tmp/e5" || fail "embed.lua missing folder"

[ $fails = 0 ] && echo "faces_e2e: all passed" || { echo "faces_e2e: $fails failed"; exit 1; }
