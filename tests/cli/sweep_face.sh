#!/bin/bash
# scripts/sweep_face.lua: a margin swept over train_face.lua runs with 2 workers — every trial a
# training process whose verifications are the trial's reports; the leaderboard, the CSV and the
# plots; a second run resumes (nothing runs again); a bad --grid is one line.
# usage: bash tests/cli/sweep_face.sh path/to/fvl builddir
set -u
. "$(dirname "$0")/lib/common.sh"
cli_init sweep_face.sh "$@"
. "$(dirname "$0")/lib/train_face.sh"   # TINY
ARGS=(--grid head.m=0.2,0.5 --store "$tmp/s.sqlite" --steps 2 --workers 2 "${TINY[@]}" --set verbose=1)
"$FVL" scripts/sweep_face.lua "${ARGS[@]}" > "$tmp/a.log" 2>&1 || fail "sweep: $(tail -5 "$tmp/a.log")"
check 'grep -q "^2 trials: 2 done" "$tmp/a.log"' "two trials done: $(tail -8 "$tmp/a.log")"
check '[ "$(grep -c "^[0-9]*,[0-9]*,done," "$tmp/s.csv")" = 2 ]' "csv: $(cat "$tmp/s.csv" 2>&1)"
check '[ -e "$tmp/s.runs/trial-1/model.npz" ] && [ -e "$tmp/s.runs/trial-2/model.npz" ]' "trial run directories"
check 'grep -q -- "--set head.m=0.5\|head.m\": *0.5\|\"m\":0.5" "$tmp/s.runs/trial-2/summary.json"' \
  "trial 2 trained with m = 0.5: $(cat "$tmp/s.runs/trial-2/summary.json" 2>&1)"
check '[ -e "$tmp/s.curves.png" ] && [ -e "$tmp/s.head_m.png" ]' "plots: $(grep plots "$tmp/a.log")"
n=$(echo 'local t = fvl.sweep.load(arg[1], {reports = true}); print(#t[1].reports, #t[2].reports)' > "$tmp/r.lua"; "$FVL" "$tmp/r.lua" "$tmp/s.sqlite" 2>&1)
check '[ "$n" = "2	2" ]' "reports per trial (one per verification): '$n'"
"$FVL" scripts/sweep_face.lua "${ARGS[@]}" > "$tmp/b.log" 2>&1 || fail "resume: $(tail -5 "$tmp/b.log")"
check 'grep -q "2 trials (grid), 2 finished" "$tmp/b.log" && ! grep -q "\[trial" "$tmp/b.log"' "resume ran trials again: $(head -3 "$tmp/b.log")"
"$FVL" scripts/sweep_face.lua --grid head.m "${TINY[@]}" > "$tmp/c.log" 2>&1
rc=$?
check '[ $rc = 1 ] && [ "$(wc -l < "$tmp/c.log")" = 1 ] && grep -q "grid .head.m.: expected key=v1,v2" "$tmp/c.log"' "bad --grid: $(cat "$tmp/c.log")"
cli_done
