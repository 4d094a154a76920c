#!/usr/bin/env bash
# no-change.sh [KILN] [RUNS] — end-to-end time of a no-change rebuild of a three-step Dockerfile,
# daemonless, median of RUNS (default 30) with hyperfine. Needs root, docker-registry, skopeo,
# hyperfine (Debian packages). Not a test: figures go to BENCHMARKS.md by hand.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
kiln=$(realpath "${1:-$here/../target/release/kiln}")
runs=${2:-30}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The registry with the busybox base, as the conformance runner sets it up.
"$here/../conformance/tools/run-cases.sh" /bin/false 2>/dev/null >/dev/null || true
mkdir -p "$work/ctx"
echo hello >"$work/ctx/a.txt"
cat >"$work/ctx/Dockerfile" <<'DF'
FROM localhost:5000/busybox
COPY a.txt /a.txt
RUN cat /a.txt > /b.txt
ENV X=1
DF
export KILN_ROOT=$work/root
cmd="$kiln build --progress quiet -o type=oci,dest=$work/out.tar $work/ctx"
$cmd
hyperfine --style basic --warmup 3 --runs "$runs" --export-json "$work/h.json" "$cmd"
python3 - "$work/h.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"no-change rebuild, 3 steps: median {r['median']*1000:.1f} ms, min {r['min']*1000:.1f} ms, max {r['max']*1000:.1f} ms ({len(r['times'])} runs)")
PY
