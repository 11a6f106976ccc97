#!/bin/bash
# scripts/train_face.lua under mpirun -np 2 (as insightface's torchrun): the head sharded over the
# ranks with Partial FC 0.1 (sample_rate), the data dealt to the ranks, the backbone's gradients
# all-reduced, rank 0 logging and writing the model, one checkpoint shard per rank; a run halted at
# step 3 and resumed on 2 ranks ends bit for bit where the straight 2-rank run ends; resuming it
# without mpirun says how; preemption: SIGUSR1 to mpirun (forwarded to every rank), then SIGTERM to
# one rank only (as srun delivers it; the ranks agree on the step) each stop the run with a
# checkpoint, exit status 128 + the signal, and the resumed run ends bit for bit where the straight one ends.
# usage: bash tests/cli/dist_train_face.sh path/to/fvl builddir
set -u
. "$(dirname "$0")/lib/common.sh"
cli_init dist_train_face.sh "$@"
T=$tmp
. "$(dirname "$0")/lib/train_face.sh"   # TINY, same_tensors
# mpirun -np 2: sharded head, Partial FC 0.1; halted at 3 and resumed on 2 ranks = straight
. "$(dirname "$0")/../dist/env.sh"
# 30 steps (~30 ms each): the signals below, sent once a step is logged, land with the run ~1 s
# from its end, not racing a run that ends 0.3 s after its first step (as 10 steps did under load)
DIST=("${TINY[@]}" --set sample_rate=0.1 --set save_every=0 --steps 30)
mpirun_np 2 "$FVL" scripts/train_face.lua --out "$T/d" "${DIST[@]}" > "$T/d.log" 2>&1 || fail "mpirun -np 2: $(tail -5 "$T/d.log")"
grep -q "per rank × 2 ranks (head sharded)" "$T/d.log" && ok || fail "no 2-rank line: $(head -3 "$T/d.log")"
grep -q '"world_size": *2' "$T/d/checkpoint/dist.json" && [ -e "$T/d/model.npz" ] && ok || fail "no sharded checkpoint or model"
mpirun_np 2 "$FVL" scripts/train_face.lua --out "$T/h" "${DIST[@]}" --set halt_at=3 > "$T/h.log" 2>&1 || fail "halt on 2 ranks: $(tail -5 "$T/h.log")"
"$FVL" scripts/train_face.lua --out "$T/h" "${DIST[@]}" --resume > "$T/h1.log" 2>&1
[ $? = 1 ] && grep -q "was saved by 2 ranks: resume with mpirun -np 2" "$T/h1.log" && ok || fail "one-process resume of 2 ranks: $(cat "$T/h1.log")"
mpirun_np 2 "$FVL" scripts/train_face.lua --out "$T/h" "${DIST[@]}" --resume > "$T/h2.log" 2>&1 || fail "resume on 2 ranks: $(tail -5 "$T/h2.log")"
for r in rank00000 rank00001; do
  same_tensors "$T/d/checkpoint/$r" "$T/h/checkpoint/$r" && ok || fail "$r: halt + resume on 2 ranks differs from the straight run"
done

# preemption on 2 ranks: SIGUSR1 to mpirun after step 1, resume; SIGTERM to rank 1 alone after the
# resumed run's next step, resume again: every shard equals the straight run's
mpirun_np 2 "$FVL" scripts/train_face.lua --out "$T/p" "${DIST[@]}" > "$T/p1.log" 2>&1 &
job=$!
wait_step "$T/p/metrics.jsonl" 1 || fail "no step 1 logged: $(tail -3 "$T/p1.log")"
mpi=$(pgrep -P "$(pgrep -P $job)")   # the function's subshell → timeout → mpirun
kill -USR1 "$mpi"
wait $job
rc=$?
[ $rc = 138 ] && grep -q "stopped by SIGUSR1 at step [1-9][0-9]* of 30; checkpoint written to $T/p/checkpoint; resume with: mpirun -np 2 .*--resume" "$T/p1.log" \
  && ok || fail "SIGUSR1 to mpirun: status $rc (138 expected; did the run end first?) $(grep -v '^synthetic' "$T/p1.log" | tail -4)"
k=$(sed -n 's/.*stopped by SIGUSR1 at step \([0-9]*\) .*/\1/p' "$T/p1.log")
mpirun_np 2 "$FVL" scripts/train_face.lua --out "$T/p" "${DIST[@]}" --resume > "$T/p2.log" 2>&1 &
job=$!
wait_step "$T/p/metrics.jsonl" $((${k:-1} + 1)) || fail "no step after $k logged: $(tail -3 "$T/p2.log")"
kill -TERM "$(pgrep -P "$(pgrep -P "$(pgrep -P $job)")" | sort -n | tail -1)"   # one rank only
wait $job
rc=$?
[ $rc = 143 ] && grep -q "resumed from .* at step $k" "$T/p2.log" && grep -q "stopped by SIGTERM at step [1-9][0-9]* of 30" "$T/p2.log" \
  && ok || fail "SIGTERM to one rank: status $rc (143 expected) $(grep -v '^synthetic' "$T/p2.log" | tail -4)"
mpirun_np 2 "$FVL" scripts/train_face.lua --out "$T/p" "${DIST[@]}" --resume > "$T/p3.log" 2>&1 || fail "resume after SIGTERM: $(tail -5 "$T/p3.log")"
for r in rank00000 rank00001; do
  same_tensors "$T/d/checkpoint/$r" "$T/p/checkpoint/$r" && ok || fail "$r: stop by signals + resume on 2 ranks differs from the straight run"
done


# a .rec (and the same for a folder) on 2 ranks: the images loader's shard = true
cat > "$T/mk.lua" <<'LUA'
local d = fvl.data.synthetic_faces{ image = "rgb", size = 16, identities = 5, per_identity = 8, test_identities = 0 }
for i = 1, 40 do
  local dir = string.format("%s/f/id%d", arg[1], d.train.labels:get(i))
  fvl.sys.mkdirs(dir)
  local f = assert(io.open(dir .. "/" .. i .. ".png", "wb")); f:write(fvl.data.encode_image(d.train.x:select(1, i):contiguous())); f:close()
end
fvl.sys.mkdirs(arg[1] .. "/rec")
assert(fvl.data.folder_to_rec(arg[1] .. "/f", arg[1] .. "/rec/train.rec"))
LUA
"$FVL" "$T/mk.lua" "$T" > "$T/mk.log" 2>&1 || fail "making the .rec: $(cat "$T/mk.log")"
out=$(mpirun_np 2 "$FVL" tests/dist/images_shard.lua "$T/rec/train.rec" 2>&1)
grep -q "images shard: 2 ranks, 5 batches of 4 each, disjoint" <<<"$out" && ok || fail "images:loader shard: $(tail -5 <<<"$out")"
printf 'return { data = { kind = "rec", path = "%s/rec" }, batch_size = 4, embedding_size = 16, threads = 1 }\n' "$T" > "$T/rec.lua"
mpirun_np 2 "$FVL" scripts/train_face.lua --config "$T/rec.lua" --out "$T/r" --steps 2 --set verbose=0 --set sample_rate=0.5 > "$T/r.log" 2>&1 \
  || fail "a .rec on 2 ranks: $(tail -5 "$T/r.log")"
grep -q "5 classes, 16×16 images, batch 4 per rank × 2 ranks (head sharded), 2 steps (5 per epoch)" "$T/r.log" && ok \
  || fail "a .rec on 2 ranks: $(head -3 "$T/r.log")"
cli_done
