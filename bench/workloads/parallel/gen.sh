#!/usr/bin/env bash
# gen.sh DIR — the context of the parallel-stages workload: one small input per stage.
set -euo pipefail
dir=${1:?usage: gen.sh DIR}
mkdir -p "$dir"
for s in changed b c; do echo "input $s" >"$dir/$s.txt"; done
