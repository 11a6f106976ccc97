#!/usr/bin/env bash
# scripts/bench/heads.lua at tiny sizes (its output format only, no figure is checked): the
# per-head rows and the issue #17 targets table with yes/no columns; a head whose estimated
# memory does not fit is skipped with the estimate, never started; with PyTorch (Debian
# python3-torch, a bench-only dependency, skipped without it): --check compares every PyTorch
# peer's loss and gradients with the head's, and the peers' times reach the table.
# usage (from the repo root): bash tests/cli/bench_heads.sh /path/to/fvl builddir
set -u
. "$(dirname "$0")/lib/common.sh"
cli_init bench_heads.sh "$@"
B="scripts/bench/heads.lua"
tiny="--C 300 --B 8 --D 16 --steps 1 --twopass 0 --threads 1"
if /usr/bin/python3 -c 'import torch' >/dev/null 2>&1; then torch=1; else torch=0; fi

# above --probe_above a head's memory is first estimated from two small runs (here C = 100 and 200)
probe="--probe_above 100 --probe_C 100"
"$FVL" $B $tiny --heads cosface,arcface,subcenter_arcface --torch $torch $probe >"$tmp/out" 2>&1; rc=$?
check '[ $rc == 0 ]' "heads.lua failed ($rc): $(tail -c 600 "$tmp/out")"
check 'grep -q "^head  *C  *ms/step  *GEMM ms .* % peak  *torch ms  *×torch  *×arc  *×arc/FLOP" "$tmp/out"' \
  "no column header: $(head -c 600 "$tmp/out")"
check 'grep -qE "^arcface +300 +[0-9.]+ +[0-9.]+ +[0-9.]+ " "$tmp/out"' "no arcface row: $(grep ^arcface "$tmp/out")"
check 'grep -q "^targets (issue #17)" "$tmp/out"' "no targets table: $(tail -c 600 "$tmp/out")"
# targets rows: head C ms %peak yes/no torch ×torch yes/no ×arc yes/no ×arc/FLOP yes/no wall RSS est torchMB
for h in arcface cosface subcenter_arcface; do
  row=$(sed -n '/^targets (issue #17)/,$p' "$tmp/out" | grep -E "^$h +300 ")
  check '[ -n "$row" ]' "no targets row for $h"
  check 'echo "$row" | awk "{ exit !(\$5 ~ /^(yes|no)$/ && \$10 ~ /^(yes|no)$/ && \$12 ~ /^(yes|no)$/) }"' \
    "$h's targets row has no yes/no verdicts: '$row'"
  check 'echo "$row" | awk "{ exit !(\$14 + 0 > 0 && \$15 + 0 > 0) }"' "$h's targets row has no peak RSS or estimate: '$row'"
  if [ $torch == 1 ]; then
    check 'echo "$row" | awk "{ exit !(\$6 + 0 > 0 && \$8 ~ /^(yes|no)$/) }"' "$h: no PyTorch time or verdict: '$row'"
  fi
done
check 'sed -n "/^targets (issue #17)/,\$p" "$tmp/out" | grep -qE "^arcface +300 .* 1\.000 +yes +1\.000 +yes "' \
  "ArcFace is not 1.000× itself: $(grep -E '^arcface +300 ' "$tmp/out" | tail -1)"
# tools/bench_table.lua: the markdown table of this output, of every kept heads.lua run, and
# README's table is the one the tool writes from its kept file
"$FVL" tools/bench_table.lua "$tmp/out" >"$tmp/md" 2>&1; rc=$?
check '[ $rc == 0 ] && grep -qE "^\| .arcface. \| [0-9.]+ \|" "$tmp/md" && [ $(grep -c "^| .subcenter_arcface. |" "$tmp/md") == 1 ]' \
  "bench_table.lua on this output: $(cat "$tmp/md")"
for f in docs/runs/bench/heads_*.txt; do
  case $f in *pair*) continue ;; esac
  "$FVL" tools/bench_table.lua "$f" >"$tmp/md" 2>&1; rc=$?
  check '[ $rc == 0 ] && [ $(grep -c "^| \`" "$tmp/md") -ge 2 ] && grep -q "from .docs/runs/bench/${f##*/}." "$tmp/md"' \
    "bench_table.lua $f: $(head -c 400 "$tmp/md")"
done
"$FVL" tools/bench_table.lua docs/runs/bench/heads_pair_idle.txt >"$tmp/md" 2>&1; rc=$?
check '[ $rc == 1 ] && [ $(wc -l <"$tmp/md") == 1 ] && grep -q "no heads.lua table" "$tmp/md"' \
  "bench_table.lua on a --pair output: exit $rc, '$(cat "$tmp/md")'"
cp README.md "$tmp/README.md"
"$FVL" tools/bench_table.lua docs/runs/bench/heads_100k_idle.txt --write "$tmp/README.md" --section heads_100k >/dev/null 2>&1
check 'cmp -s README.md "$tmp/README.md"' "README's heads_100k table is not what tools/bench_table.lua writes: $(diff README.md "$tmp/README.md" | head -5)"
"$FVL" tools/bench_table.lua docs/runs/bench/heads_1m_subcenter_idle.txt --write "$tmp/README.md" --section heads_1m_subcenter >/dev/null 2>&1
check 'cmp -s README.md "$tmp/README.md"' "README's heads_1m_subcenter table is not what tools/bench_table.lua writes: $(diff README.md "$tmp/README.md" | head -5)"

# too little memory for the estimate: skipped, never started
"$FVL" $B $tiny --heads arcface --torch $torch $probe --mem_mb 1 >"$tmp/out" 2>&1; rc=$?
check '[ $rc == 0 ]' "heads.lua with --mem_mb 1 failed ($rc): $(tail -c 600 "$tmp/out")"
check 'grep -qE "^arcface +300  skipped: needs ~[0-9]+ MB \(peak RSS at C=100 and 200, extrapolated\), 1 MB available" "$tmp/out"' \
  "arcface not skipped with its estimate: $(grep arcface "$tmp/out")"
if [ $torch == 1 ]; then
  check 'grep -qE "^torch: arcface skipped at C=300: needs ~[0-9]+ MB" "$tmp/out"' "the PyTorch peer was not skipped: $(grep torch: "$tmp/out")"
fi
if [ $torch == 1 ]; then
  "$FVL" $B --check 1 >"$tmp/out" 2>&1; rc=$?
  check '[ $rc == 0 ]' "a PyTorch peer differs from its head: $(cat "$tmp/out")"
  check 'grep -q "^heads.lua --check: 20 heads, 0 failed" "$tmp/out"' "not every head checked: $(tail -3 "$tmp/out")"
else
  echo "bench_heads.sh: /usr/bin/python3 has no torch: the PyTorch peers not checked"
fi
cli_done
