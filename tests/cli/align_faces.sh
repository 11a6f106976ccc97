#!/usr/bin/env bash
# scripts/align_faces.lua on synthetic loose crops with known landmarks (tests/lua/ijb_fixture.lua):
# the aligned crops match the original aligned faces; sub-directories are kept; errors name the
# file and line.
# usage (from the repo root): bash tests/cli/align_faces.sh /path/to/fvl builddir
set -u
. "$(dirname "$0")/lib/common.sh"
cli_init align_faces.sh "$@"

cat >"$tmp/make.lua" <<'LUA'
local info = dofile("tests/lua/ijb_fixture.lua")(arg[1] .. "/IJB", "ijbb")
fvl.save(arg[1] .. "/aligned.npy", info.aligned)
LUA
"$FVL" "$tmp/make.lua" "$tmp" >"$tmp/mout" 2>&1 && ok || { fail "fixture"; cat "$tmp/mout"; }
# the same faces listed under a sub-directory, with a score-less line format
mkdir -p "$tmp/IJB/loose_crop/id_a"
cp "$tmp/IJB/loose_crop/2.jpg" "$tmp/IJB/loose_crop/id_a/two.jpg"
awk '{ $1 = ($1 == "2.jpg") ? "id_a/two.jpg" : $1; NF = 11; print }' "$tmp/IJB/meta/ijbb_name_5pts_score.txt" >"$tmp/lm.txt"

"$FVL" scripts/align_faces.lua "$tmp/IJB/meta/ijbb_name_5pts_score.txt" "$tmp/IJB/loose_crop" "$tmp/out" \
  >"$tmp/out1" 2>"$tmp/err1" && ok || { fail "align_faces.lua"; cat "$tmp/err1"; }
grep -q "^4 faces aligned to 112x112 in " "$tmp/out1" && ok || { fail "summary line"; cat "$tmp/out1"; }
"$FVL" scripts/align_faces.lua "$tmp/lm.txt" "$tmp/IJB/loose_crop" "$tmp/out2" --format jpeg >/dev/null 2>"$tmp/err2" \
  && ok || { fail "align_faces.lua, sub-directory"; cat "$tmp/err2"; }
[ -s "$tmp/out2/id_a/two.jpg" ] && ok || fail "sub-directory kept"
cat >"$tmp/check.lua" <<'LUA'
local dir = arg[1]
local want = fvl.load(dir .. "/aligned.npy")
local function cos(a, b) return (a * b):sum():item() / (a:norm():item() * b:norm():item()) end
for i = 1, 4 do
  local f = assert(io.open(string.format("%s/out/%d.png", dir, i), "rb"))
  local img = fvl.data.decode_image(f:read("a"))
  f:close()
  local c = cos((img - 127.5):reshape(img:numel()), (want[i]:contiguous() - 127.5):reshape(img:numel()))
  assert(c > 0.98, string.format("face %d: cosine %.4f with the original", i, c))
end
print("ok")
LUA
"$FVL" "$tmp/check.lua" "$tmp" >"$tmp/cout" 2>&1 && ok || { fail "crops match the originals"; cat "$tmp/cout"; }

printf '1.jpg 1 2 3\n' >"$tmp/bad.txt"
"$FVL" scripts/align_faces.lua "$tmp/bad.txt" "$tmp/IJB/loose_crop" "$tmp/o3" >/dev/null 2>"$tmp/e3" && fail "bad line accepted"
grep -q "bad.txt line 1 has 4 fields, expected 11 or 12" "$tmp/e3" && ok || { fail "bad line message"; cat "$tmp/e3"; }
sed 's/^3.jpg/missing.jpg/' "$tmp/IJB/meta/ijbb_name_5pts_score.txt" >"$tmp/miss.txt"
"$FVL" scripts/align_faces.lua "$tmp/miss.txt" "$tmp/IJB/loose_crop" "$tmp/o4" >/dev/null 2>"$tmp/e4" && fail "missing image accepted"
grep -q "miss.txt line 3: image .*missing.jpg cannot be read" "$tmp/e4" && ok || { fail "missing image message"; cat "$tmp/e4"; }
"$FVL" scripts/align_faces.lua "$tmp/lm.txt" "$tmp/IJB/loose_crop" "$tmp/o5" --size 8 >/dev/null 2>"$tmp/e5" && fail "size 8 accepted"
grep -q "size: expected an integer >= 16" "$tmp/e5" && ok || { fail "size message"; cat "$tmp/e5"; }
cli_done
