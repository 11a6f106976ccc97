#!/bin/bash
# scripts/train_face.lua on the .rec and image-folder data paths: synthetic RGB faces written as
# an identity folder of PNGs and as an insightface .rec (+ .idx, property) by
# tests/cli/train_face_data.lua, with a .bin pack of held-out identities; a few steps from each
# with verification (flip test) every 4 steps. Checks the JSONL/CSV logs and curves appear and
# their numbers are sane (finite loss, rates in [0, 1], the learning rate on its polynomial
# schedule), that the .rec and the folder (same images, same order) train bit for bit alike,
# that a .rec run halted mid-epoch and resumed ends where the straight run ends, and that the
# MS1MV2 config passes --check (its data is not here) while a broken config is refused.
set -u
FVL=${1:?usage: train_face_data.sh path/to/fvl builddir}
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }

"$FVL" tests/cli/train_face_data.lua "$T" > "$T/data.log" 2>&1 || { bad "writing the data: $(tail -3 "$T/data.log")"; echo "train_face_data.sh: data failed"; exit 1; }
for kind in rec folder; do
  path=$T/rec/train.rec
  [ $kind = folder ] && path=$T/faces
  cat > "$T/$kind.lua" <<CFG
return { name = "t_$kind", data = { kind = "$kind", path = "$path" }, val = { "$T/val.bin" },
         network = "mobilefacenet", embedding_size = 16, head = { kind = "arcface", s = 16, m = 0.3 },
         lr = 0.05, warmup_steps = 2, batch_size = 8, steps = 8, verbose = 4, log_every = 2, save_every = 0,
         threads = 2 }
CFG
done
# 40 images, batch 8: 5 steps per epoch, so 8 steps cross an epoch boundary
"$FVL" scripts/train_face.lua --config "$T/rec.lua" --out "$T/r" > "$T/r.log" 2>&1 || bad "rec run failed: $(tail -3 "$T/r.log")"
"$FVL" scripts/train_face.lua --config "$T/folder.lua" --out "$T/f" > "$T/f.log" 2>&1 || bad "folder run failed: $(tail -3 "$T/f.log")"
for run in r f; do
  for file in metrics.jsonl verification.csv verification_curve.png verification_curve.csv loss_curve.png loss_curve.csv \
              summary.json model.npz checkpoint/checkpoint.json; do
    [ -s "$T/$run/$file" ] && ok || bad "$run: missing $file"
  done
  [ "$(grep -c '^[48],val,' "$T/$run/verification.csv")" = 2 ] && ok || bad "$run: verification.csv: $(cat "$T/$run/verification.csv")"
  grep -q "\[step 8\] val: acc .*(40 pairs, flip)" "$T/$run.log" && ok || bad "$run: no flip-test line: $(grep step "$T/$run.log")"
done
grep -q "t_rec: mobilefacenet .* 8 classes, 32×32 images, batch 8, 8 steps (5 per epoch)" "$T/r.log" && ok || bad "rec plan line: $(head -2 "$T/r.log")"

# the numbers: read back from the JSONL log, the CSV and the summary
"$FVL" -e "
local recs = assert(fvl.log.read('$T/r/metrics.jsonl'))
local train, val = {}, {}
for _, r in ipairs(recs) do if r.kind == 'train' then train[#train + 1] = r elseif r.kind == 'val' then val[#val + 1] = r end end
assert(#train == 4 and #val == 2, ('records: %d train, %d val'):format(#train, #val))
for i, r in ipairs(train) do
  assert(r.step == 2 * i, 'train step ' .. r.step)
  assert(r.loss == r.loss and r.loss > 0 and r.loss < 100, 'loss ' .. r.loss)
  assert(r.grad_norm == r.grad_norm and r.grad_norm > 0 and r.grad_norm < math.huge, 'grad_norm ' .. r.grad_norm)
  local k = r.step - 1   -- the lr of the step just taken: warm-up 2 steps, then 0.05 (1 - p)^2
  local want = k < 2 and 0.05 * k / 2 or 0.05 * (1 - (k - 2) / 6) ^ 2
  assert(math.abs(r.lr - want) < 1e-12, ('lr at step %d: %g, expected %g'):format(r.step, r.lr, want))
end
for _, r in ipairs(val) do
  assert(r.pack == 'val', 'pack name ' .. tostring(r.pack))
  for _, k in ipairs({'acc', 'auc', 'eer', 'std'}) do assert(r[k] >= 0 and r[k] <= 1, k .. ' = ' .. r[k]) end
  assert(r.xnorm > 0 and r.xnorm < math.huge, 'xnorm ' .. r.xnorm)
end
local rows = {}
for line in io.lines('$T/r/verification.csv') do rows[#rows + 1] = line end
assert(rows[1] == 'step,pack,acc,std,eer,auc,val_1e3,xnorm', rows[1])
local st, pk, acc = rows[3]:match('^(%d+),(%w+),([%d.]+),')
assert(tonumber(st) == 8 and pk == 'val' and math.abs(tonumber(acc) - val[2].acc) < 1e-6, 'csv row ' .. rows[3])
local s = fvl.json.decode(assert(io.open('$T/r/summary.json')):read('a'))
assert(s.steps == 8 and s.classes == 8 and s.image_size == 32 and s.final_loss == train[4].loss, 'summary')
assert(s.verification.val.acc == val[2].acc, 'summary verification')
local net = assert(fvl.nn.load('$T/r/model.npz'))
local pack = assert(fvl.data.bin_pack('$T/val.bin'))
local r = fvl.eval.bin_pack(net, pack, {flip = true, size = {32, 32}})
assert(math.abs(r.accuracy - val[2].acc) < 1e-9, ('saved model: acc %g, logged %g'):format(r.accuracy, val[2].acc))
" > "$T/check.log" 2>&1 && ok || bad "logged numbers: $(cat "$T/check.log")"

# the same images in the same order: the .rec and the folder train identically
lr=$(grep -o '"loss":[^,]*' "$T/r/metrics.jsonl" | tr '\n' ' ')
lf=$(grep -o '"loss":[^,]*' "$T/f/metrics.jsonl" | tr '\n' ' ')
[ -n "$lr" ] && [ "$lr" = "$lf" ] && ok || bad "rec and folder losses differ: $lr / $lf"
cmp -s "$T/r/verification.csv" "$T/f/verification.csv" && ok || bad "rec and folder verification differ"

# halted at step 6 (epoch 2, one batch in), resumed: the checkpoint equals the straight run's
"$FVL" scripts/train_face.lua --config "$T/rec.lua" --out "$T/h" --set halt_at=6 > "$T/h1.log" 2>&1 || bad "halted rec run failed: $(tail -2 "$T/h1.log")"
"$FVL" scripts/train_face.lua --config "$T/rec.lua" --out "$T/h" --resume > "$T/h2.log" 2>&1 || bad "rec resume failed: $(tail -3 "$T/h2.log")"
grep -q "resumed from .* at step 6" "$T/h2.log" && ok || bad "no resume line: $(head -3 "$T/h2.log")"
n=0 diffs=0
for f in "$T"/r/checkpoint/g*/*.npy; do
  n=$((n + 1))
  cmp -s "$f" "$T"/h/checkpoint/g*/"$(basename "$f")" || { diffs=$((diffs + 1)); [ $diffs -le 3 ] && echo "differs: $(basename "$f")"; }
done
[ $n -gt 100 ] && [ $diffs = 0 ] && ok || bad "$diffs of $n checkpoint tensors differ after halt + resume on the .rec"

# the MS1MV2 config is valid (--check; its data is not on this machine), a broken one is refused
"$FVL" scripts/train_face.lua --config scripts/configs/ms1mv2_r50.lua --check > "$T/m.log" 2>&1 && ok || bad "ms1mv2 --check: $(cat "$T/m.log")"
grep -q "ms1mv2_r50: config scripts/configs/ms1mv2_r50.lua is valid" "$T/m.log" && grep -q "iresnet50, 43590336 parameters" "$T/m.log" \
  && grep -q "sgd, lr 0.025 polynomial (power 2)" "$T/m.log" && ok || bad "ms1mv2 plan: $(cat "$T/m.log")"
# the same config pointed at the little .rec opens it and counts its classes
"$FVL" scripts/train_face.lua --config scripts/configs/ms1mv2_r50.lua --check --set data.path="$T/rec/train.rec" \
  --set network=r18 --set batch_size=8 > "$T/m2.log" 2>&1 && grep -q "rec $T/rec/train.rec: 8 classes, 32×32 images, 5 steps per epoch" "$T/m2.log" \
  && ok || bad "ms1mv2 on the .rec: $(cat "$T/m2.log")"
"$FVL" scripts/train_face.lua --config "$T/rec.lua" --check --set data.identities=3 > "$T/e1.log" 2>&1
[ $? = 1 ] && grep -q "unknown key data.identities for data.kind = 'rec'" "$T/e1.log" && ok || bad "data key: $(cat "$T/e1.log")"
"$FVL" scripts/train_face.lua --config "$T/rec.lua" --set data.path="$T/nope.rec" > "$T/e2.log" 2>&1
[ $? = 1 ] && [ "$(wc -l < "$T/e2.log")" = 1 ] && grep -q "nope.rec" "$T/e2.log" && ok || bad "missing .rec: $(cat "$T/e2.log")"
"$FVL" scripts/train_face.lua --config "$T/rec.lua" --set warmup_steps=8 > "$T/e3.log" 2>&1
[ $? = 1 ] && grep -q "warmup_steps = 8 must be smaller than the 8 training steps" "$T/e3.log" && ok || bad "warm-up: $(cat "$T/e3.log")"
"$FVL" scripts/train_face.lua --config "$T/rec.lua" --set lr=-1 > "$T/e4.log" 2>&1
[ $? = 1 ] && grep -q "config: lr = -1 (expected a number > 0)" "$T/e4.log" && ok || bad "lr: $(cat "$T/e4.log")"

echo "train_face_data.sh: $pass passed, $fail failed"
[ $fail = 0 ]
