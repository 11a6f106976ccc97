#!/bin/bash
# The face researcher's journey through scripts/train_face.lua, where it used to hurt:
# - insightface's config names get their translation in the error; sample_rate (Partial FC) and
#   lr_steps (step decay, lists through --set a,b) work; a .rec directory and bare val names.
# - embed.lua over more than 64 batches, and a folder whose image size is not the model's;
# - the scripts from a stock lua5.4.
# (kill -9 + resume and a real-size pack: train_face_journey_slow.sh; mpirun -np 2:
# dist_train_face.sh)
# usage: bash tests/cli/train_face_journey.sh path/to/fvl builddir
set -u
. "$(dirname "$0")/lib/common.sh"
cli_init train_face_journey.sh "$@"
T=$tmp
. "$(dirname "$0")/lib/train_face.sh"   # TINY, same_tensors

# 1. insightface's names and conventions
expect_err() {   # PATTERN ARGS...: train_face.lua --check ARGS fails with one line matching PATTERN
  local pat=$1; shift
  "$FVL" scripts/train_face.lua --check "$@" > "$T/e.log" 2>&1
  [ $? = 1 ] && [ "$(wc -l < "$T/e.log")" = 1 ] && grep -q "$pat" "$T/e.log" && ok || fail "expected '$pat': $(cat "$T/e.log")"
}
expect_err "unknown config key 'num_epoch' (insightface's num_epoch is epochs here)" --set num_epoch=20
expect_err "unknown config key 'margin_list' (insightface's margin_list is head = " --set margin_list=1,0.5,0
expect_err "sample_rate = 2 (expected a number in (0, 1\]" --set sample_rate=2
expect_err "lr_steps\[2\] = 3 (expected an integer >= 6)" --set lr_steps=5,3
expect_err "config: val\[2\] = 3 (expected a .bin file name)" --set val=lfw,3
"$FVL" scripts/train_face.lua --check "${TINY[@]}" --set sample_rate=0.1 > "$T/c.log" 2>&1
grep -q "head      arcface, Partial FC sample_rate 0.1" "$T/c.log" && ok || fail "sample_rate plan: $(cat "$T/c.log")"
# config.rec is a directory, val_targets bare names beside it
mkdir -p "$T/faces_emore"
cat > "$T/mk.lua" <<'LUA'
local d = fvl.data.synthetic_faces{ image = "rgb", size = 16, identities = 5, per_identity = 14, test_identities = 2, test_per_identity = 2 }
for i = 1, 70 do
  local dir = string.format("%s/f/id%d", arg[1], d.train.labels:get(i))
  fvl.sys.mkdirs(dir)
  local f = assert(io.open(dir .. "/" .. i .. ".png", "wb")); f:write(fvl.data.encode_image(d.train.x:select(1, i):contiguous())); f:close()
end
assert(fvl.data.folder_to_rec(arg[1] .. "/f", arg[1] .. "/faces_emore/train.rec"))
assert(fvl.data.write_pairs_pack(arg[1] .. "/faces_emore/lfw.bin", d.test.x, d.test.labels, { pairs = 10 }))
LUA
"$FVL" "$T/mk.lua" "$T" > "$T/mk.log" 2>&1 || fail "making the .rec: $(cat "$T/mk.log")"
printf 'return { data = { kind = "rec", path = "%s" }, val = { "lfw" }, batch_size = 2 }\n' "$T/faces_emore" > "$T/rec.lua"
"$FVL" scripts/train_face.lua --check --config "$T/rec.lua" > "$T/r.log" 2>&1
grep -q "data      rec $T/faces_emore/train.rec: 5 classes, 16×16 images" "$T/r.log" && grep -q "val       $T/faces_emore/lfw.bin every" "$T/r.log" \
  && ok || fail "rec directory and bare val name: $(cat "$T/r.log")"


"$FVL" scripts/train_face.lua --out "$T/s" "${TINY[@]}" --steps 1 > "$T/s.log" 2>&1 || fail "a one-step model: $(tail -3 "$T/s.log")"
# embed.lua: 70 images in batches of 1 (more than fvl.cat's 64 pieces), then a folder of another size
"$FVL" scripts/embed.lua "$T/s/model.npz" "$T/f" "$T/e.npy" --batch 1 > "$T/em.log" 2>&1
grep -q "e.npy: 70 embeddings of dimension 16 (5 classes)" "$T/em.log" && [ "$(wc -l < "$T/e-paths.txt")" = 70 ] && ok \
  || fail "embed.lua --batch 1: $(tail -3 "$T/em.log")"
printf 'local d = fvl.data.synthetic_faces{ image = "rgb", size = 20, identities = 2, per_identity = 2, test_identities = 0 }\nfor i = 1, 4 do fvl.sys.mkdirs(arg[1] .. "/id" .. d.train.labels:get(i)); local f = assert(io.open(arg[1] .. "/id" .. d.train.labels:get(i) .. "/" .. i .. ".png", "wb")); f:write(fvl.data.encode_image(d.train.x:select(1, i):contiguous())); f:close() end\n' > "$T/mk20.lua"
"$FVL" "$T/mk20.lua" "$T/f20" > /dev/null 2>&1
"$FVL" scripts/embed.lua "$T/s/model.npz" "$T/f20" "$T/e20.npy" > "$T/em.log" 2>&1
rc=$?
[ $rc = 1 ] && grep -q "the model takes 16x16 images (its meta.input) but .*f20 holds 20x20 images" "$T/em.log" && ok \
  || fail "embed.lua size mismatch: $(cat "$T/em.log")"

# 2. the scripts from a stock lua5.4 (require "fvl" through LUA_CPATH), without -l fvl
if grep -q '^FVL_SANITIZE:BOOL=ON' "$2/CMakeCache.txt" 2>/dev/null; then
  echo "train_face_journey.sh: sanitizer build, stock lua5.4 part skipped"
elif command -v lua5.4 >/dev/null; then
  env -u LUA_PATH LUA_CPATH="$2/?.so;;" lua5.4 scripts/train_face.lua --check "${TINY[@]}" > "$T/l.log" 2>&1
  grep -q "config scripts/configs/synthetic_mbf.lua is valid" "$T/l.log" && ok || fail "lua5.4 train_face.lua: $(head -3 "$T/l.log")"
  env -u LUA_PATH LUA_CPATH="$2/?.so;;" lua5.4 scripts/verify.lua --help > "$T/l.log" 2>&1 && grep -q "^Usage:" "$T/l.log" && ok \
    || fail "lua5.4 verify.lua --help: $(head -3 "$T/l.log")"
fi
cli_done
