#!/usr/bin/env bash
# Builds and runs the main experiment: every loss compared (scripts/compare_losses.lua).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh
exec build/fvl scripts/compare_losses.lua "$@"
