#!/usr/bin/env bash
# run.sh [--smoke] [--kiln BIN] [--only W1,W2] [--builders kiln,buildah,docker,buildkitd,skopeo]
#        [--runs N] [--ctx-mb MB] [--ctx-files N] [--export-mb MB] [--parallel-mb MB]
#        [--pull-layers N] [--pull-kib KIB] [--out FILE] [--work DIR]
# Benchmarks Kiln against Buildah, Docker's BuildKit builder (where an engine runs) and a BuildKit
# daemon (when BUILDKIT_HOST names one) on the workloads in bench/workloads: cold, no-change and
# one-file-changed rebuilds timed with hyperfine; and the pull workload (a 10-layer image from a
# local registry, cold and with the layers present) against `skopeo copy`. Prints medians, min–max
# and ratios (other / Kiln) and writes BENCHMARKS.md. --smoke: one run each, tiny sizes, no
# installs, the report goes to the scratch directory (CI keeps the runner working with it; it
# asserts nothing about times).
# Needs root, runc, hyperfine, docker-registry, skopeo, curl, python3 (Debian packages) and a
# release build (cargo build --release -p kiln). Installs Debian's buildah if missing (not --smoke).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/bench.py" "$@"
