#!/usr/bin/env bash
# The project stands alone: no source, test, doc or build file points at reference material
# outside the repository (the shared reference documents or a ../shared directory).
# usage (from the repo root): bash tests/cli/standalone.sh /path/to/fvl builddir
set -u
cd "$(dirname "$0")/../.."
# the names, assembled so that this file does not match itself
pat="(LOSSES|API|PROTOCOLS|STYLE)\\.md|\\.\\./shared"
if git rev-parse --git-dir >/dev/null 2>&1; then
  files=$(git ls-files -co --exclude-standard)
else
  files=$(find . -type f -not -path './build*' -not -path './.git/*')
fi
hits=$(echo "$files" | grep -E '\.(c|h|lua|md|sh|py|txt|cmake|1)$|CMakeLists.txt|^\.ci/' |
       grep -v '^tests/cli/standalone.sh$' | xargs -r grep -nE "$pat" 2>/dev/null)
if [ -n "$hits" ]; then
  echo "FAIL: references to material outside the repository (write it into docs/ in our own words):"
  echo "$hits"
  exit 1
fi
echo "standalone: no references outside the repository"
