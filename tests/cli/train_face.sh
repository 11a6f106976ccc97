#!/bin/bash
# scripts/train_face.lua end to end on a tiny synthetic config: training with periodic
# verification, checkpoints, model and summary; a run halted at step 3 and resumed ends bit for
# bit where the uninterrupted run ends (every checkpoint tensor compared); Ctrl-C saves a
# checkpoint and says how to continue; config errors are one line.
set -u
FVL=${1:?usage: train_face.sh path/to/fvl builddir}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
TINY=(--set data.identities=10 --set data.per_identity=4 --set data.test_identities=4 --set data.test_per_identity=3
      --set data.pairs=20 --set data.size=32 --set batch_size=8 --set warmup_steps=2 --set verbose=3
      --set save_every=2 --set threads=2 --set embedding_size=16)

"$FVL" scripts/train_face.lua --out "$T/a" "${TINY[@]}" --steps 6 > "$T/a.log" 2>&1 || bad "straight run failed: $(tail -3 "$T/a.log")"
for f in checkpoint/checkpoint.json model.npz summary.json metrics.jsonl verification.csv verification_curve.png synthetic_val.bin; do
  [ -e "$T/a/$f" ] && ok || bad "missing $f"
done
grep -q '"kind":"val"' "$T/a/metrics.jsonl" && ok || bad "no verification record"
[ "$(grep -c '^[0-9]' "$T/a/verification.csv")" = 2 ] && ok || bad "verification.csv rows: $(cat "$T/a/verification.csv")"
grep -q "synthetic_val: acc" "$T/a.log" && ok || bad "no verification line"

# halted at step 3, then resumed to 6: identical tensors
"$FVL" scripts/train_face.lua --out "$T/b" "${TINY[@]}" --steps 6 --set halt_at=3 > "$T/b1.log" 2>&1 || bad "halted run failed"
grep -q "halted at step 3" "$T/b1.log" && ok || bad "no halt message: $(tail -2 "$T/b1.log")"
"$FVL" scripts/train_face.lua --out "$T/b" "${TINY[@]}" --steps 6 --resume > "$T/b2.log" 2>&1 || bad "resume failed: $(tail -3 "$T/b2.log")"
grep -q "resumed from .* at step 3" "$T/b2.log" && ok || bad "no resume line"
na=$(ls "$T"/a/checkpoint/g*/*.npy | wc -l)
[ "$na" -gt 100 ] && ok || bad "few checkpoint tensors: $na"
diffs=0
for f in "$T"/a/checkpoint/g*/*.npy; do
  g=$(ls "$T"/b/checkpoint/g*/"$(basename "$f")" 2>/dev/null)
  cmp -s "$f" "$g" || { diffs=$((diffs + 1)); [ $diffs -le 3 ] && echo "differs: $(basename "$f")"; }
done
[ $diffs = 0 ] && ok || bad "$diffs of $na tensors differ after halt + resume"

# Ctrl-C: a checkpoint of the last finished step and a one-line message
"$FVL" scripts/train_face.lua --out "$T/c" "${TINY[@]}" --steps 100000 --set verbose=0 > "$T/c.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do
  grep -q '"kind":"train"' "$T/c/metrics.jsonl" 2>/dev/null && break
  sleep 0.2
done
kill -INT $pid
wait $pid
rc=$?
[ $rc = 1 ] && ok || bad "Ctrl-C exit status $rc"
grep -q "interrupted; checkpoint of step [0-9]* saved to" "$T/c.log" && ok || bad "Ctrl-C message: $(tail -2 "$T/c.log")"
[ -e "$T/c/checkpoint/checkpoint.json" ] && ok || bad "no checkpoint after Ctrl-C"

# configuration errors: one line, exit status 1
"$FVL" scripts/train_face.lua --out "$T/d" --set nework=r18 > "$T/d.log" 2>&1
[ $? = 1 ] && grep -q "unknown config key 'nework'" "$T/d.log" && ok || bad "unknown key: $(cat "$T/d.log")"
"$FVL" scripts/train_face.lua --out "$T/d" --set network=r19 --set data.identities=4 --set data.test_identities=2 > "$T/d.log" 2>&1
[ $? = 1 ] && grep -q "depth = 19" "$T/d.log" && ok || bad "bad network: $(cat "$T/d.log")"

echo "train_face.sh: $pass passed, $fail failed"
[ $fail = 0 ]
