#!/bin/bash
# The face researcher's journey through scripts/train_face.lua, the longer part (named _slow: left
# out of the sanitizer pass, the Lua and shell logic it checks has no C of its own):
# - kill -9 after a periodic checkpoint, then --resume: the run ends bit for bit where a straight
#   run ends, and metrics.jsonl / verification.csv hold each step once (the steps logged between
#   the checkpoint and the kill are dropped, not repeated);
# - a pack with enough impostor pairs for VAL@FAR=1e-3 (>= 1,112) is verified and its VAL goes
#   to verification.csv (this crashed: the CSV writer took the {tar, std, far} table for a number);
#   its progress bar; lr_steps.
# usage: bash tests/cli/train_face_journey_slow.sh path/to/fvl builddir
set -u
. "$(dirname "$0")/lib/common.sh"
cli_init train_face_journey_slow.sh "$@"
T=$tmp
. "$(dirname "$0")/lib/train_face.sh"   # TINY, same_tensors

# 1. kill -9 after the checkpoint of step 4, then --resume
KILL=("${TINY[@]}" --set save_every=4 --steps 14)
"$FVL" scripts/train_face.lua --out "$T/s" "${KILL[@]}" > "$T/s.log" 2>&1 || fail "straight run: $(tail -3 "$T/s.log")"
"$FVL" scripts/train_face.lua --out "$T/k" "${KILL[@]}" > "$T/k.log" 2>&1 &
pid=$!
for _ in $(seq 1 900); do   # wait for a step logged after the checkpoint of step 4
  grep -q '"step":6,' "$T/k/metrics.jsonl" 2>/dev/null && break
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
kill -9 $pid 2>/dev/null && wait $pid 2>/dev/null
if grep -q '"step":14,' "$T/k/metrics.jsonl"; then
  fail "the run ended before kill -9 (machine too fast for the test?)"
else
  "$FVL" scripts/train_face.lua --out "$T/k" "${KILL[@]}" --resume > "$T/k2.log" 2>&1 || fail "resume after kill -9: $(tail -3 "$T/k2.log")"
  grep -q "resumed from .* at step [48]" "$T/k2.log" && ok || fail "resume line: $(head -3 "$T/k2.log")"
  grep -q "metrics.jsonl: dropped [1-9][0-9]* record(s) logged after step" "$T/k2.log" && ok || fail "no dropped-records line: $(head -3 "$T/k2.log")"
  steps=$(grep -o '"step":[0-9]*,' "$T/k/metrics.jsonl" | tr -d '"step:,' | tr '\n' ' ')
  [ "$steps" = "1 2 3 4 5 6 7 8 9 10 11 12 13 14 " ] && ok || fail "metrics.jsonl steps after kill -9 + resume: $steps"
  same_tensors "$T/s/checkpoint" "$T/k/checkpoint" && ok || fail "kill -9 + resume differs from the straight run"
fi

# 2. VAL@FAR=1e-3 needs >= 1,000 impostor pairs in the 9 training folds: 2,240 pairs
"$FVL" scripts/train_face.lua --out "$T/v" "${TINY[@]}" --set data.pairs=2240 --set verbose=3 --steps 3 \
  --set lr_steps=1 > "$T/v.log" 2>&1 || fail "2,240-pair verification: $(tail -3 "$T/v.log")"
grep -q "VAL@FAR=1e-3 [0-9.]* ± " "$T/v.log" && ok || fail "no VAL in the verification line: $(grep acc "$T/v.log")"
awk -F, 'NR == 2 && $7 ~ /^[0-9.]+$/ { found = 1 } END { exit !found }' "$T/v/verification.csv" && ok \
  || fail "verification.csv val_1e3: $(cat "$T/v/verification.csv")"
grep -q "(verification): 100% 4480/4480" "$T/v.log" && ok || fail "no verification progress line: $(grep verification "$T/v.log" | head -3)"
grep '"step":2,' "$T/v/metrics.jsonl" | grep -q '"lr":0.01000' && ok || fail "lr_steps: lr at step 2 $(grep '"step":2,' "$T/v/metrics.jsonl")"

cli_done
