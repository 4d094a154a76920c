#!/usr/bin/env bash
# Recreates what git cannot hold in this case's context: its empty directories. Run on a copy of
# the case (the tests and run-cases.sh do); harmless to run twice.
set -euo pipefail
cd "$(dirname "$0")/ctx"
mkdir -p empty withempty/e1/e2
