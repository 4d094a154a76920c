#!/usr/bin/env bash
# demo.sh [KILN] — a real build end to end: a local registry with a busybox base (made from
# Debian's busybox-static), a Dockerfile build to an OCI tarball, and the image checked with
# skopeo and umoci.
set -euo pipefail
cd "$(dirname "$0")/.."
kiln=$(realpath "${1:-target/release/kiln}")
case=conformance/kiln-cases/01-single-stage-app
# run-cases.sh starts the registry on 127.0.0.1:5000 with localhost:5000/busybox if needed,
# builds the case and compares the image with the one BuildKit built.
conformance/tools/run-cases.sh "$kiln" 01-single-stage-app
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$kiln" build --progress plain -f "$case/Dockerfile" -o type=oci,dest="$out/image.tar",name=kiln-demo:latest "$case/ctx"
skopeo inspect "oci-archive:$out/image.tar" | head -20
mkdir "$out/layout" && tar -xf "$out/image.tar" -C "$out/layout"
true &&
  umoci unpack --image "$out/layout:latest" "$out/bundle"
echo "--- /opt/greeter/data/combined.txt in the built image:"
cat "$out/bundle/rootfs/opt/greeter/data/combined.txt"
