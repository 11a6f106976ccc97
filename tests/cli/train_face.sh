#!/bin/bash
# scripts/train_face.lua end to end on a tiny synthetic config: training with periodic
# verification, checkpoints, model and summary; a run halted at step 3 and resumed ends bit for
# bit where the uninterrupted run ends (every checkpoint tensor compared); Ctrl-C saves a
# checkpoint and says how to continue (status 130), and --resume from it ends where a straight run
# ends; so does SIGTERM (preemption: status 143, at the next step boundary); the
# update holds Ctrl-C; the memory of a step is reported; FVL_TRAIN_SET and --set override; several
# margin schedules; config errors are one line.
set -u
FVL=${1:?usage: train_face.sh path/to/fvl builddir}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
. "$(dirname "$0")/lib/train_face.sh"   # same_tensors, wait_step (its TINY is replaced below)
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

# Ctrl-C: a checkpoint of the last finished step and a one-line message; --resume from it ends bit
# for bit where a straight run of the same length ends
STRAIGHT=("${TINY[@]}" --set verbose=0 --set save_every=0 --set log_every=1 --steps 16)
"$FVL" scripts/train_face.lua --out "$T/s" "${STRAIGHT[@]}" > "$T/s.log" 2>&1 || bad "straight 16-step run failed: $(tail -3 "$T/s.log")"
# signal_run SIG DIR: the straight config in DIR, SIG sent once step 1 is logged; sets rc
signal_run() {
  "$FVL" scripts/train_face.lua --out "$T/$2" "${STRAIGHT[@]}" > "$T/$2.log" 2>&1 &
  local pid=$!
  wait_step "$T/$2/metrics.jsonl" 1 || bad "$2: no step logged: $(tail -3 "$T/$2.log")"
  kill -"$1" $pid
  wait $pid
  rc=$?
}
signal_run INT c
[ $rc = 130 ] && ok || bad "Ctrl-C exit status $rc, expected 130 (the run ended before the signal?) $(tail -2 "$T/c.log")"
grep -q "stopped by SIGINT (Ctrl-C) at step [0-9]* of 16; checkpoint written to $T/c/checkpoint; resume with: .* --resume$" "$T/c.log" \
  && ok || bad "Ctrl-C message: $(tail -2 "$T/c.log")"
[ -e "$T/c/checkpoint/checkpoint.json" ] && ok || bad "no checkpoint after Ctrl-C"
"$FVL" scripts/train_face.lua --out "$T/c" "${STRAIGHT[@]}" --resume > "$T/c2.log" 2>&1 || bad "resume after Ctrl-C failed: $(tail -3 "$T/c2.log")"
grep -q "resumed from .* at step [1-9]" "$T/c2.log" && ok || bad "no resume line after Ctrl-C: $(head -3 "$T/c2.log")"
same_tensors "$T/s/checkpoint" "$T/c/checkpoint" && ok || bad "after Ctrl-C + resume"

# SIGTERM (a scheduler's preemption): the run stops at the next step boundary with a checkpoint,
# exit status 143 and the command that resumes it; that command ends where the straight run ends
signal_run TERM p
[ $rc = 143 ] && ok || bad "SIGTERM exit status $rc, expected 143 (the run ended before the signal?) $(tail -2 "$T/p.log")"
grep -q "stopped by SIGTERM at step [1-9][0-9]* of 16; checkpoint written to $T/p/checkpoint" "$T/p.log" && ok || bad "SIGTERM message: $(tail -2 "$T/p.log")"
resume=$(sed -n 's/.*; resume with: //p' "$T/p.log")
eval "$resume" > "$T/p2.log" 2>&1 || bad "the printed resume command failed: $resume: $(tail -3 "$T/p2.log")"
grep -q "resumed from .* at step [1-9]" "$T/p2.log" && ok || bad "no resume line after SIGTERM: $(head -3 "$T/p2.log")"
same_tensors "$T/s/checkpoint" "$T/p/checkpoint" && ok || bad "after SIGTERM + resume"

# the optimiser update runs with Ctrl-C held: a press inside fvl.sys.hold_interrupts lets the
# function finish and is raised after it; outside, it stops the Lua code at once
cat > "$T/hold.lua" <<'LUA'
local function press()
  fvl.sys.kill(fvl.sys.getpid(), "INT")
  for _ = 1, 20 do fvl.sys.sleep(0.02) end
  return "finished"
end
local ok, res = pcall(fvl.sys.hold_interrupts, press)
fvl.sys.abort_clear()
print("held", ok, res)
ok, res = pcall(press)
fvl.sys.abort_clear()
print("unheld", ok, res)
print("sum", fvl.sys.hold_interrupts(function(a, b) return a + b end, 2, 3))
LUA
"$FVL" "$T/hold.lua" > "$T/hold.log" 2>&1
grep -qx "held	false	interrupted" "$T/hold.log" && ok || bad "hold_interrupts: $(cat "$T/hold.log")"
grep -q "^unheld	false	.*interrupted" "$T/hold.log" && ok || bad "without hold: $(cat "$T/hold.log")"
grep -qx "sum	5" "$T/hold.log" && ok || bad "hold_interrupts results: $(cat "$T/hold.log")"

# the memory of a training step: in every train record and in summary.json
grep -q '"mem_mb":[1-9]' "$T/a/metrics.jsonl" && ok || bad "no mem_mb in the train records"
grep -q '"step_peak_mb":[1-9]' "$T/a/summary.json" && grep -q '"peak_rss_mb":[1-9]' "$T/a/summary.json" && ok \
  || bad "summary.json memory: $(cat "$T/a/summary.json")"
grep -q "memory of a training step [0-9]* MB" "$T/a.log" && ok || bad "no memory line: $(tail -1 "$T/a.log")"

# overrides: FVL_TRAIN_SET, then --set (which wins)
FVL_TRAIN_SET="batch_size=4;head.kind=cosface;head.m=0.3" "$FVL" scripts/train_face.lua --check --set batch_size=5 > "$T/e.log" 2>&1
grep -q "head      cosface" "$T/e.log" && grep -q "batch 5," "$T/e.log" && ok || bad "FVL_TRAIN_SET/--set: $(cat "$T/e.log")"
FVL_TRAIN_SET="batchsize=4" "$FVL" scripts/train_face.lua --check > "$T/e.log" 2>&1
[ $? = 1 ] && grep -q "FVL_TRAIN_SET 'batchsize=4': unknown config key 'batchsize'" "$T/e.log" && ok || bad "FVL_TRAIN_SET error: $(cat "$T/e.log")"

# several margin schedules (m and s), any fvl.schedule kind, logged with the train records
cat > "$T/two.lua" <<'LUA'
local c = dofile("scripts/configs/synthetic_mbf.lua")
c.margin_schedule = { { field = "m", kind = "linear", from = 0, to = 0.5, steps = 4 },
                      { field = "s", kind = "polynomial", from = 8, to = 32, steps = 4, power = 1 } }
return c
LUA
"$FVL" scripts/train_face.lua --config "$T/two.lua" --out "$T/m" "${TINY[@]}" --set verbose=0 --set log_every=1 --steps 4 > "$T/m.log" 2>&1 \
  || bad "two margin schedules: $(tail -3 "$T/m.log")"
grep '"step":4' "$T/m/metrics.jsonl" | grep -q '"m":0.375' && grep '"step":4' "$T/m/metrics.jsonl" | grep -q '"s":26.0' && ok \
  || bad "scheduled m and s at step 4: $(grep '"step":4' "$T/m/metrics.jsonl")"
sed -i 's/field = "s"/field = "scale"/' "$T/two.lua"
"$FVL" scripts/train_face.lua --config "$T/two.lua" --out "$T/m2" "${TINY[@]}" --steps 4 > "$T/m2.log" 2>&1
[ $? = 1 ] && grep -q "margin_schedule\[2\].field = 'scale': head arcface has no number field scale" "$T/m2.log" && ok \
  || bad "unknown scheduled field: $(cat "$T/m2.log")"

# face_run_report.lua: the README block, the picture and the exported record from run directories
# (seed1 = the straight run above, seed2 trained by the report itself with --train)
mkdir -p "$T/x" && cp -r "$T/a" "$T/x/seed1"
SETS=()
for kv in "${TINY[@]}"; do [ "$kv" != --set ] && SETS+=(--set "$kv"); done
printf 'intro\n<!-- face-run:begin -->\nold\n<!-- face-run:end -->\nafter\n' > "$T/README.md"
"$FVL" scripts/face_run_report.lua --run-dir "$T/x" --seeds 1,2 --train "${SETS[@]}" --steps 6 > "$T/r.log" 2>&1 \
  || bad "face_run_report --train: $(tail -3 "$T/r.log")"
"$FVL" scripts/face_run_report.lua --run-dir "$T/x,$T/x" --seeds 1,2 --readme "$T/README.md" --figure "$T/fig.png" \
  --export "$T/exp" > "$T/r2.log" 2>&1 || bad "face_run_report: $(tail -3 "$T/r2.log")"
grep -q "arcface (s 32, m 0.5): final accuracy [0-9.]* ± [0-9.]* % over 2 seeds" "$T/README.md" && ok \
  || bad "README block: $(cat "$T/README.md")"
grep -q "^| 6 | " "$T/README.md" && ! grep -q "^old" "$T/README.md" && grep -q "^after" "$T/README.md" && ok \
  || bad "README block rows / markers: $(cat "$T/README.md")"
[ -s "$T/fig.png" ] && grep -c "^1," "$T/fig.csv" | grep -q "^1[0-9]$" && ok || bad "figure or its data: $(head -3 "$T/fig.csv")"
[ -s "$T/exp/x/seed2/metrics.jsonl" ] && grep -q '"head_options":{"m":0.5,"s":32}' "$T/exp/x/seed1/summary.json" && ok \
  || bad "export: $(ls -R "$T/exp" | head; cat "$T/exp/x/seed1/summary.json")"

# configuration errors: one line, exit status 1
"$FVL" scripts/train_face.lua --out "$T/d" --set nework=r18 > "$T/d.log" 2>&1
[ $? = 1 ] && grep -q "unknown config key 'nework'" "$T/d.log" && ok || bad "unknown key: $(cat "$T/d.log")"
"$FVL" scripts/train_face.lua --out "$T/d" --set network=r19 --set data.identities=4 --set data.test_identities=2 > "$T/d.log" 2>&1
[ $? = 1 ] && grep -q "depth = 19" "$T/d.log" && ok || bad "bad network: $(cat "$T/d.log")"

echo "train_face.sh: $pass passed, $fail failed"
[ $fail = 0 ]
