# tests/cli/lib/train_face.sh — shared by train_face_journey.sh and dist_train_face.sh: a tiny
# synthetic scripts/train_face.lua run (16×16 faces, 10 identities, batch 8, one thread) and a
# bit-for-bit comparison of two checkpoints.
TINY=(--set data.identities=10 --set data.per_identity=4 --set data.test_identities=4 --set data.test_per_identity=3
      --set data.pairs=20 --set data.size=16 --set batch_size=8 --set warmup_steps=0 --set threads=1
      --set embedding_size=16 --set verbose=0 --set log_every=1)
same_tensors() {   # DIR_A DIR_B: every .npy of A's checkpoint generations equals B's
  local n=0 d=0 f
  for f in "$1"/g*/*.npy; do
    n=$((n + 1))
    cmp -s "$f" "$(ls "$2"/g*/"$(basename "$f")" 2>/dev/null)" || d=$((d + 1))
  done
  [ "$n" -gt 100 ] && [ "$d" = 0 ] || { echo "$d of $n tensors differ"; return 1; }
}
wait_step() {   # METRICS N: until METRICS holds a train record of step N or later (at most 120 s)
  local i
  for i in $(seq 1 1200); do
    awk -v n="$2" '/"kind":"train"/ && match($0, /"step":[0-9]+/) { if (substr($0, RSTART + 7, RLENGTH - 7) + 0 >= n) f = 1 }
                   END { exit !f }' "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  return 1
}
