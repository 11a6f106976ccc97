#!/usr/bin/env bash
# scripts/sweep_margins.lua on a tiny budget: the search stores the collapse diagnostics as
# metrics of every finished trial, and the confirmation stage trains the best configuration again
# over two seeds and prints its seed spread.
# usage (from the repo root): bash tests/cli/sweep_margins.sh /path/to/fvl builddir
set -u
. "$(dirname "$0")/lib/common.sh"
cli_init sweep_margins.sh "$@"

"$FVL" scripts/sweep_margins.lua --quick --steps 18 --confirm 1 --seeds 2 --store "$tmp/s.sqlite" >"$tmp/out" 2>"$tmp/err"
rc=$?
check '[ $rc == 0 ]' "sweep_margins exited $rc: $(tail -c 800 "$tmp/err")"
check 'grep -q "finalists trained again over seeds 1..2" "$tmp/out"' "no confirmation table: $(tail -5 "$tmp/out")"
check 'grep -qE "^(arcface|cosface) m=[0-9.]+ s=[0-9]+ [a-z]+ +2 .* ± .* [0-2]/2$" "$tmp/out"' \
  "no finalist row with two seeds, spread and collapsed count: $(tail -3 "$tmp/out")"
cat >"$tmp/check.lua" <<'LUA'
local keys = { "acc", "tar", "eer", "norm_mean", "norm_std", "mrl_x", "mrl_centres", "min_centre_angle", "min_recall", "collapsed" }
local function check(path, want_seed)
  local n = 0
  for _, t in ipairs(fvl.sweep.load(path)) do
    if t.status == "done" then
      n = n + 1
      for _, k in ipairs(keys) do assert(type(t.metrics[k]) == "number", path .. ": trial " .. t.id .. " has no metric " .. k) end
      assert(t.metrics.collapsed == 0 or t.metrics.collapsed == 1, "collapsed is 0 or 1")
      assert(t.metrics.mrl_x >= 0 and t.metrics.mrl_x <= 1 + 1e-6, "mrl_x in [0, 1]")
      if want_seed then assert(t.config.seed == 1 or t.config.seed == 2, "seed in the config") end
    end
  end
  return n
end
assert(check(arg[1], false) >= 1, "the search finished no trial")
assert(check(arg[2], true) == 2, "the confirmation stage did not finish two seeds")
LUA
"$FVL" "$tmp/check.lua" "$tmp/s.sqlite" "$tmp/s_seeds.sqlite" 2>"$tmp/err2"; rc=$?
check '[ $rc == 0 ]' "stored metrics: $(cat "$tmp/err2")"

cli_done
