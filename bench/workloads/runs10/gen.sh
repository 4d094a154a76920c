#!/usr/bin/env bash
# gen.sh DIR — the context of the ten-RUN workload: one file.
set -euo pipefail
dir=${1:?usage: gen.sh DIR}
mkdir -p "$dir"
echo hello >"$dir/changed.txt"
