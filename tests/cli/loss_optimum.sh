#!/usr/bin/env bash
# scripts/loss_optimum.lua (the heads' losses minimised over free features and centres): in 2-D
# Circle's minima are collapsed and lower than the loss of the ideal arrangement (ten centres 36°
# apart, every feature on its centre), in 4-D they are not collapsed; Softmax is healthy in 2-D;
# the section writer; option errors. scripts/ambiguous_pair.lua (two classes sharing their samples):
# ArcFace's loss is lower with the two centres merged, CosFace's does not depend on their angle.
# usage (from the repo root): bash tests/cli/loss_optimum.sh /path/to/fvl builddir
set -u
. "$(dirname "$0")/lib/common.sh"
cli_init loss_optimum.sh "$@"

printf 'intro\n<!-- results:opt -->\nstale\n<!-- /results:opt -->\nend\n' >"$tmp/doc.md"
"$FVL" scripts/loss_optimum.lua --heads softmax,circle --dims 2,4 --seeds 2 --steps 1500 \
  --file "$tmp/doc.md" --section opt >"$tmp/out" 2>"$tmp/err"; rc=$?
check '[ $rc == 0 ]' "loss_optimum failed: $(tail -c 600 "$tmp/err")"
check 'grep -q "^| Softmax | 2 | 0/2 | .* | 100, 100 |" "$tmp/out"' "Softmax in 2-D: $(grep Softmax "$tmp/out")"
check 'grep -q "^| Circle (γ 64, m 0.25) | 2 | 2/2 |" "$tmp/out"' "Circle in 2-D is not collapsed: $(grep Circle "$tmp/out")"
check 'grep -q "^| Circle (γ 64, m 0.25) | 4 | 0/2 | .* | 100, 100 |" "$tmp/out"' "Circle in 4-D: $(grep Circle "$tmp/out")"
# Circle's 2-D minima are below the loss of the ideal arrangement: the loss prefers the collapse
row=$(grep "^| Circle (γ 64, m 0.25) | 2 |" "$tmp/out")
ideal=$(echo "$row" | awk -F'|' '{gsub(/ /, "", $9); print $9}')
found=$(echo "$row" | awk -F'|' '{print $8}' | tr -d ' ')
check '[ -n "$ideal" ] && awk -v l="$found" -v i="$ideal" "BEGIN { n = split(l, a, \",\"); for (k = 1; k <= n; k++) if (a[k] + 0 >= i + 0) exit 1; exit n == 2 ? 0 : 1 }"' \
  "Circle's 2-D minima ($found) are not all below the ideal arrangement's loss ($ideal)"
check '! grep -q stale "$tmp/doc.md" && grep -q "^| Circle (γ 64, m 0.25) | 4 |" "$tmp/doc.md" && grep -q "^end$" "$tmp/doc.md"' \
  "the section was not written: $(cat "$tmp/doc.md")"
check 'grep -q "Reproduce: .build/fvl scripts/loss_optimum.lua --heads softmax,circle --dims 2,4 --seeds 2 --steps 1500.\." "$tmp/doc.md"' \
  "the section does not give the command: $(grep Reproduce "$tmp/doc.md")"

"$FVL" scripts/loss_optimum.lua --dims 1 >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc != 0 ] && grep -q "dims: expected integers >= 2" "$tmp/err"' "--dims 1: $(cat "$tmp/err")"
"$FVL" scripts/loss_optimum.lua --heads nosuch >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc != 0 ] && grep -q "heads: .nosuch. is not one of" "$tmp/err"' "--heads nosuch: $(cat "$tmp/err")"
"$FVL" scripts/loss_optimum.lua --file "$tmp/doc.md" >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc != 0 ] && grep -q "go together" "$tmp/err"' "--file without --section: $(cat "$tmp/err")"

"$FVL" scripts/ambiguous_pair.lua --heads cosface,arcface --margins 1 --angles 0,20 >"$tmp/pair" 2>"$tmp/err"; rc=$?
check '[ $rc == 0 ] && grep -q "^| ArcFace | 1 | +0.000 | +1\.[0-9]* | 0° |" "$tmp/pair"' "ArcFace pair: $(cat "$tmp/pair" "$tmp/err")"
check 'grep -q "^| CosFace | 1 | +0.000 | +0.000 | 0° |" "$tmp/pair"' "CosFace pair: $(grep CosFace "$tmp/pair")"
"$FVL" scripts/ambiguous_pair.lua --angles 0,200 >/dev/null 2>"$tmp/err"; rc=$?
check '[ $rc != 0 ] && grep -q "angles: expected degrees in 0..180" "$tmp/err"' "--angles 200: $(cat "$tmp/err")"

cli_done
