#!/usr/bin/env bash
# Runs every test: unit and integration tests of all crates (real runc, overlay mounts, a real
# registry, skopeo and umoci; needs root), then the public conformance cases through the
# conformance runner, with the kiln binary the tests built.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
bin=${CARGO_TARGET_DIR:-target}/debug/kiln
root=$(mktemp -d /var/tmp/kiln-cases.XXXXXX)
trap 'rm -rf "$root"' EXIT
KILN_ROOT=$root conformance/tools/run-cases.sh "$(realpath "$bin")"
# The benchmark runner's smoke pass (one run each, tiny sizes; asserts nothing about times): keeps
# bench/run.sh working. Needs hyperfine (Debian package).
bench/run.sh --smoke --kiln "$(realpath "$bin")"
