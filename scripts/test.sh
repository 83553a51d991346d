#!/usr/bin/env bash
# Runs the whole test suite (unit and integration; the integration tests make
# real FUSE mounts, so run as root). Extra arguments go to ctest, e.g.
#   ./scripts/test.sh -R fsx      ./scripts/test.sh -L unit
set -euo pipefail
cd "$(dirname "$0")/.."
cmake --build build
cd build
ctest --output-on-failure --timeout 900 "$@"
