#!/usr/bin/env bash
# long_functions.sh — list the functions longer than N lines (default 80) in the project's C and Lua
# sources, longest first: "lines  file:first-last  name". C through universal-ctags (end: field),
# Lua through `luac5.4 -l` (each function's line range; a nested function counts inside its parent
# too, and is listed on its own line).
#   bash tools/long_functions.sh [N [paths...]]
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-80}; shift || true
PATHS=("$@"); [ ${#PATHS[@]} -gt 0 ] || PATHS=(engine lua app scripts tests tools)
{
  find "${PATHS[@]}" -name '*.c' -o -name '*.h' | sort | while read -r f; do
    ctags --c-kinds=f --fields=+ne -o - "$f" 2>/dev/null |
      awk -F'\t' -v f="$f" '{ l=""; e=""; for (i = 4; i <= NF; i++) { if ($i ~ /^line:/) l = substr($i, 6); if ($i ~ /^end:/) e = substr($i, 5) }
                              if (l != "" && e != "") print e - l + 1, f ":" l "-" e, $1 }'
  done
  find "${PATHS[@]}" -name '*.lua' | sort | while read -r f; do
    luac5.4 -p -l -o /dev/null "$f" 2>/dev/null |
      awk -v f="$f" '/^(main|function) </ { if ($1 == "main") next; s = $2; sub(/^<[^:]*:/, "", s); sub(/>$/, "", s)
                                               split(s, r, ","); print r[2] - r[1] + 1, f ":" r[1] "-" r[2], "function" }'
  done
} | awk -v n="$N" '$1 > n' | sort -rn
