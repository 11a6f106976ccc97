#!/usr/bin/env bash
# Builds and runs every test (Check suites, Lua API specs, CLI tests) through ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/build.sh
cd build
ctest --output-on-failure -j2 "$@"
