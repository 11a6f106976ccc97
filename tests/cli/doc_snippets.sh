#!/usr/bin/env bash
# The docs are true: runs every "```lua runnable" block of README.md and docs/*.md on small data
# made with the project's own tools, checks their relative links and the script options they
# show (tests/cli/doc_snippets.lua says what exactly).
# usage (from the repo root): bash tests/cli/doc_snippets.sh /path/to/fvl builddir
set -u
FVL=${1:?usage: bash tests/cli/doc_snippets.sh /path/to/fvl builddir}
case $FVL in /*) ;; *) FVL=$PWD/$FVL ;; esac
tmp=$(mktemp -d)
[ -n "${KEEP:-}" ] && echo "keeping $tmp" || trap 'rm -rf "$tmp"' EXIT
"$FVL" tests/cli/doc_snippets.lua "$FVL" "$tmp"
