#!/usr/bin/env bash
# gen.sh DIR — the context of the twenty-step workload: six small sources and changed.txt.
set -euo pipefail
dir=${1:?usage: gen.sh DIR}
mkdir -p "$dir/src"
for i in 01 02 03 04 05 06; do printf 'source %s\n' "$i" >"$dir/src/$i.txt"; done
echo initial >"$dir/changed.txt"
