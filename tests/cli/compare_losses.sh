#!/usr/bin/env bash
# scripts/compare_losses.lua and scripts/report_compare.lua on a tiny run: the files of a run
# directory, one key per metric, the smoke-test notice, seed spread, identical tables on a rerun
# and with another number of worker processes, the README section writer, and option errors.
# usage (from the repo root): bash tests/cli/compare_losses.sh /path/to/fvl builddir
set -u
. "$(dirname "$0")/lib/common.sh"
cli_init compare_losses.sh "$@"
[ -x "$FVL" ] || { echo "FAIL: $FVL is not an executable"; exit 1; }

if ! "$FVL" -e 'assert(fvl.data.fashion_mnist{split = "test", limit = 1})' >/dev/null 2>&1; then
  echo "note: Fashion-MNIST not installed (dataset-fashion-mnist); compare_losses not checked"
  exit 0
fi

tiny=(--quick --heads softmax,arcface --seeds 2 --fm-steps 20 --syn-steps 20 --identities 70 --per-identity 4 --fm-dim 2)
"$FVL" scripts/compare_losses.lua "${tiny[@]}" --out "$tmp/a" --jobs 2 >"$tmp/out" 2>"$tmp/err"
rc=$?
check '[ $rc == 0 ]' "compare_losses exited $rc: $(tail -c 800 "$tmp/err")"
for f in results.csv summary.csv results.json settings.json table.txt features.png boundaries.png roc.png \
         curves.png norms.png tasks/arcface-s1/fmnist_test_embeddings.npy tasks/arcface-s2/synthetic_roc.csv \
         tasks/softmax-s2/synthetic_test_embeddings.npy tasks/softmax-s1/synthetic_test_labels.npy \
         tasks/softmax-s1/fmnist_centres.npy tasks/softmax-s1/fmnist_centre_angles.csv tasks/softmax-s1/result.json; do
  check '[ -s "$tmp/a/$f" ]' "the run directory has no $f"
done
check 'grep -q "SMOKE TEST" "$tmp/err"' "--quick does not say it is a smoke test"
check 'grep -q "SMOKE TEST" "$tmp/a/table.txt"' "the quick table does not say it is a smoke test"
check 'grep -q "mean ± std over 2 seeds" "$tmp/out"' "the table does not name its seeds: $(cat "$tmp/out")"
check 'grep -q "^ArcFace .* ± " "$tmp/out"' "the table has no spread: $(cat "$tmp/out")"
check '[ "$(head -1 "$tmp/a/results.csv")" == "head,seed,fmnist_acc,fmnist_min_recall,fmnist_collapsed,fmnist_norm_mean,fmnist_mrl_x,fmnist_mrl_centres,fmnist_min_centre_angle,fmnist_merged_pairs,verif_acc,verif_fold_std,tar_at_far_1e-3,tar_at_far_1e-2,eer,auc,syn_collapsed,syn_norm_mean,syn_mrl_x,syn_min_centre_angle,syn_centre_norm,fmnist_seconds,syn_seconds" ]' \
  "results.csv header: $(head -1 "$tmp/a/results.csv")"
check '[ $(wc -l < "$tmp/a/results.csv") == 5 ]' "results.csv should have 4 rows (2 heads × 2 seeds)"
check 'grep -q "^arcface,verif_acc,2," "$tmp/a/summary.csv"' "summary.csv has no arcface verif_acc over 2 seeds"
# the same metric names in results.json (runs and summary) as in results.csv
cat >"$tmp/check.lua" <<'LUA'
  local f = assert(io.open(arg[1])) local R = fvl.json.decode(f:read("a")) f:close()
  local keys = {}
  for _, m in ipairs(R.metrics) do keys[#keys + 1] = m.key end
  for _, r in ipairs(R.runs) do for _, k in ipairs(keys) do
    if k ~= "fmnist_collapsed" and k ~= "syn_collapsed" then assert(type(r[k]) == "number", "run " .. r.key .. " lacks " .. k) end
  end end
  for _, s in ipairs(R.summary) do for _, k in ipairs(keys) do
    assert(s[k] and s[k].n == 2 and s[k].min <= s[k].mean and s[k].mean <= s[k].max, s.key .. " summary of " .. k)
  end end
  assert(#R.settings.seed_list == 2 and R.settings.command:match("compare_losses"), "settings")
LUA
"$FVL" "$tmp/check.lua" "$tmp/a/results.json" 2>"$tmp/err2"; rc=$?
check '[ $rc == 0 ]' "results.json: $(cat "$tmp/err2")"

# a rerun, and a rerun with one worker process, give the same numbers (timings aside)
"$FVL" scripts/compare_losses.lua "${tiny[@]}" --out "$tmp/b" --jobs 1 >"$tmp/out_b" 2>"$tmp/err"; rc=$?
check '[ $rc == 0 ]' "second run failed: $(tail -c 600 "$tmp/err")"
cut -d, -f1-21 "$tmp/a/results.csv" >"$tmp/a.csv"
cut -d, -f1-21 "$tmp/b/results.csv" >"$tmp/b.csv"
check 'cmp -s "$tmp/a.csv" "$tmp/b.csv"' "results differ between --jobs 2 and --jobs 1: $(diff "$tmp/a.csv" "$tmp/b.csv" | head -5)"
check 'cmp -s "$tmp/out" "$tmp/out_b"' "the printed table differs between runs"

# report_compare: a marked section of a document rewritten from the run directory
printf 'intro\n<!-- results:tiny -->\nstale\n<!-- /results:tiny -->\nend\n' >"$tmp/doc.md"
"$FVL" scripts/report_compare.lua "$tmp/a" --file "$tmp/doc.md" --section tiny 2>"$tmp/err"; rc=$?
check '[ $rc == 0 ]' "report_compare failed: $(cat "$tmp/err")"
check '! grep -q stale "$tmp/doc.md"' "the section was not replaced"
check 'grep -q "^| ArcFace | .* ± " "$tmp/doc.md"' "no ArcFace row with spread: $(cat "$tmp/doc.md")"
check 'grep -q "^intro$" "$tmp/doc.md" && grep -q "^end$" "$tmp/doc.md"' "text around the section changed"
check 'grep -q "compare_losses.lua --quick" "$tmp/doc.md"' "the section does not give the command"
check 'grep -q "compare_losses.lua --quick .*--fm-scale 16 --fm-margin 1 --scale 32 --head-lr 1 --head-wd 0.0005 --margin-warmup 0.3 --out" "$tmp/doc.md"' \
  "the command does not spell out the recipe: $(grep Reproduce "$tmp/doc.md")"
# several run directories: the ablation table, with the recipe columns that differ between them
"$FVL" scripts/report_compare.lua "$tmp/a" "$tmp/b" >"$tmp/abl" 2>"$tmp/err"; rc=$?
check '[ $rc == 0 ] && grep -q "^| s | head | FMNIST acc % | collapsed |" "$tmp/abl"' "ablation table: $(head -3 "$tmp/abl") $(cat "$tmp/err")"
"$FVL" scripts/report_compare.lua "$tmp/a" --heads arcface >"$tmp/one" 2>"$tmp/err"; rc=$?
check '[ $rc == 0 ] && grep -q "^| ArcFace |" "$tmp/one" && ! grep -q "^| Softmax |" "$tmp/one" && grep -q "report_compare.lua --heads arcface " "$tmp/one"' \
  "--heads arcface: $(cat "$tmp/one" "$tmp/err")"
"$FVL" scripts/report_compare.lua "$tmp/a" --file "$tmp/doc.md" --section nosuch >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc != 0 ] && grep -q "has no section <!-- results:nosuch -->" "$tmp/err"' "a missing section: $(cat "$tmp/err")"

# option errors name the option
"$FVL" scripts/compare_losses.lua --heads softmax,nosuch --out "$tmp/c" >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc != 0 ] && grep -q "heads: .nosuch. is not one of" "$tmp/err"' "unknown head: $(cat "$tmp/err")"
"$FVL" scripts/compare_losses.lua --seeds 0 --out "$tmp/c" >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc != 0 ] && grep -q "seeds: expected an integer >= 1" "$tmp/err"' "--seeds 0: $(cat "$tmp/err")"
"$FVL" scripts/compare_losses.lua --bn sometimes --out "$tmp/c" >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc != 0 ] && grep -q "bn" "$tmp/err"' "--bn sometimes: $(cat "$tmp/err")"

"$FVL" scripts/compare_losses.lua --fm-margin 0 --out "$tmp/c" >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc != 0 ] && grep -q "fm-margin: expected a number > 0" "$tmp/err"' "--fm-margin 0: $(cat "$tmp/err")"
"$FVL" scripts/compare_losses.lua --warmup 1 --out "$tmp/c" >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc != 0 ] && grep -q "warmup: expected a fraction" "$tmp/err"' "--warmup 1: $(cat "$tmp/err")"

"$FVL" scripts/compare_losses.lua --margin-warmup 1.5 --out "$tmp/c" >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc != 0 ] && grep -q "margin-warmup: expected a fraction" "$tmp/err"' "--margin-warmup 1.5: $(cat "$tmp/err")"

# --margin-warmup: the margins grow from 0 and end at the papers' values (the boundary spec of the
# trained head), and training differs from the run with the full margin from the first step;
# --fm-dim 3 trains a 3-D embedding (no feature pictures)
"$FVL" scripts/compare_losses.lua "${tiny[@]}" --seeds 1 --heads arcface,npcface --syn-steps 0 --margin-warmup 0.5 \
  --out "$tmp/mw" --jobs 2 >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc == 0 ]' "--margin-warmup run failed: $(tail -c 600 "$tmp/err")"
cat >"$tmp/mw.lua" <<'LUA'
  local function load(p) local f = assert(io.open(p)) local R = fvl.json.decode(f:read("a")) f:close() return R end
  local a, b = load(arg[1] .. "/tasks/arcface-s1/result.json"), load(arg[2] .. "/tasks/arcface-s1/result.json")
  assert(b.boundary.m == 0.5, "ArcFace's margin after the warm-up: " .. tostring(b.boundary.m))
  local n = load(arg[2] .. "/tasks/npcface-s1/result.json").boundary
  assert(n.m0 == 0.4 and math.abs(n.m1 - 0.2) < 1e-12, "NPCFace's margins after the warm-up")
  assert(a.fmnist_curve[1][2] ~= b.fmnist_curve[1][2], "the warm-up changed nothing in the first steps")
  assert(load(arg[2] .. "/settings.json").margin_warmup == 0.5, "settings.margin_warmup")
LUA
"$FVL" "$tmp/mw.lua" "$tmp/a" "$tmp/mw" 2>"$tmp/err2"; rc=$?
check '[ $rc == 0 ]' "margin warm-up: $(cat "$tmp/err2")"
"$FVL" scripts/compare_losses.lua --quick --heads arcface --fm-steps 20 --syn-steps 0 --fm-dim 3 \
  --out "$tmp/d3" --jobs 1 >"$tmp/out_d3" 2>"$tmp/err"; rc=$?
check '[ $rc == 0 ] && grep -q "s 16 (3-D)" "$tmp/out_d3" && [ ! -e "$tmp/d3/features.png" ]' "--fm-dim 3: $(tail -c 600 "$tmp/err")"
check '[ -s "$tmp/d3/features_sphere.png" ] && [ -s "$tmp/d3/features_sphere.csv" ]' "--fm-dim 3 draws no features_sphere.png"

# --syn-bn-scale fixes the scale of the insightface BatchNorm; refused with another form
"$FVL" scripts/compare_losses.lua --syn-bn-scale 4 --out "$tmp/c" >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc != 0 ] && grep -q "syn-bn-scale: needs --syn-bn insightface" "$tmp/err"' "--syn-bn-scale with feature: $(cat "$tmp/err")"
"$FVL" scripts/compare_losses.lua --syn-bn insightface --syn-bn-scale 0 --out "$tmp/c" >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc != 0 ] && grep -q "syn-bn-scale: expected a number > 0" "$tmp/err"' "--syn-bn-scale 0: $(cat "$tmp/err")"

cli_done
