#!/usr/bin/env bash
# scripts/eval_ijb.lua on a synthetic IJB directory (tests/lua/ijb_fixture.lua: synthetic faces
# placed into loose-crop JPEGs with known landmarks): a saved model with the flip test and a
# ROC picture, the same features given back as .npy, and the script's errors.
# usage (from the repo root): bash tests/cli/eval_ijb.sh /path/to/fvl builddir
set -u
. "$(dirname "$0")/lib/common.sh"
cli_init eval_ijb.sh "$@"

cat >"$tmp/make.lua" <<'LUA'
local dir = arg[1]
dofile("tests/lua/ijb_fixture.lua")(dir .. "/IJBC", "ijbc")
local net = fvl.nn.Sequential{ fvl.nn.Flatten(), fvl.nn.Linear(3 * 112 * 112, 16) }
assert(fvl.nn.save(dir .. "/model.npz", net, { meta = { input = { 3, 112, 112 } } }))
LUA
"$FVL" "$tmp/make.lua" "$tmp" >"$tmp/mout" 2>&1 && ok || { fail "fixture"; cat "$tmp/mout"; }

"$FVL" scripts/eval_ijb.lua "$tmp/IJBC" --model "$tmp/model.npz" --batch 3 --roc "$tmp/roc.png" \
  --json "$tmp/r.json" --save-features "$tmp/f.npy" >"$tmp/out" 2>"$tmp/err" && ok || { fail "eval_ijb.lua --model"; cat "$tmp/err"; }
cat "$tmp/out"
grep -q "^IJBC " "$tmp/out" && ok || fail "a TAR row named IJBC"
grep -q "flip test, D1 N1$" "$tmp/out" && ok || fail "insightface's default mode D1 N1"
grep -q "4 templates, 2 genuine and 4 impostor pairs" "$tmp/out" && ok || fail "counts line"
[ -s "$tmp/roc.png" ] && ok || fail "ROC picture"
grep -q '"tar_at_far"' "$tmp/r.json" && ok || fail "json"
[ -s "$tmp/f.npy" ] && ok || fail "--save-features"

"$FVL" scripts/eval_ijb.lua "$tmp/IJBC" --features "$tmp/f.npy" >"$tmp/out2" 2>"$tmp/err2" && ok || { fail "eval_ijb.lua --features"; cat "$tmp/err2"; }
[ "$(grep '^IJBC ' "$tmp/out")" = "$(grep '^IJBC ' "$tmp/out2")" ] && ok || { fail "features give the model's table"; cat "$tmp/out2"; }
"$FVL" scripts/eval_ijb.lua "$tmp/IJBC" --features "$tmp/f.npy" --no-detector-score --no-norm-score >"$tmp/out3" 2>&1 \
  && ok || { fail "--no-detector-score --no-norm-score"; cat "$tmp/out3"; }
grep -q "D0 N0$" "$tmp/out3" && ok || { fail "mode D0 N0"; cat "$tmp/out3"; }

"$FVL" scripts/eval_ijb.lua "$tmp/IJBC" >/dev/null 2>"$tmp/e1" && fail "no source accepted"
grep -q "^eval_ijb.lua: give one of --model MODEL or --features FEATS.npy$" "$tmp/e1" && ok || { fail "no source message"; cat "$tmp/e1"; }
"$FVL" scripts/eval_ijb.lua "$tmp/nowhere" --features "$tmp/f.npy" >/dev/null 2>"$tmp/e2" && fail "missing dir accepted"
grep -q "holds no ijbb_/ijbc_face_tid_mid.txt" "$tmp/e2" && ok || { fail "missing dir message"; cat "$tmp/e2"; }
[ "$(wc -l <"$tmp/e2")" = 1 ] && ok || fail "one line on stderr"
"$FVL" scripts/eval_ijb.lua "$tmp/IJBC" --features "$tmp/f.npy" --batch 0 >/dev/null 2>"$tmp/e3" && fail "batch 0 accepted"
grep -q "batch: expected an integer >= 1" "$tmp/e3" && ok || { fail "batch message"; cat "$tmp/e3"; }
"$FVL" scripts/eval_ijb.lua --help | grep -q "IJB-B / IJB-C 1:1 verification" && ok || fail "--help"
cli_done
