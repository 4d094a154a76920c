#!/usr/bin/env bash
# Runs every test: unit and integration tests of all crates (real runc, registry, skopeo, umoci;
# needs root), then the public conformance cases against a release build of kiln.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --locked
cargo build --release --locked -p kiln
bin=${CARGO_TARGET_DIR:-target}/release/kiln
export KILN_ROOT=$(mktemp -d /var/tmp/kiln-cases.XXXXXX)
trap 'rm -rf "$KILN_ROOT"' EXIT
conformance/tools/run-cases.sh "$(realpath "$bin")" 01-single-stage-app 02-multistage-target 03-arg-env-expansion 05-dockerignore 09-workdir-user
