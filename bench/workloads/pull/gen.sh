#!/usr/bin/env bash
# gen.sh DIR LAYERS KIB REGISTRY — the pull workload's image: LAYERS gzip tar layers of KIB KiB of
# seeded pseudo-random bytes each (mkimage.py: offline, same digests every time), pushed with
# skopeo to REGISTRY/pullbench:latest (plain http). DIR, the build context, gets only image.json:
# the manifest and layer digests the pulls must bring back.
set -euo pipefail
usage="usage: gen.sh DIR LAYERS KIB REGISTRY"
dir=${1:?$usage} layers=${2:?$usage} kib=${3:?$usage} reg=${4:?$usage}
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$dir"
layout=$(mktemp -d "${TMPDIR:-/var/tmp}/kiln-bench-pull.XXXXXX")
trap 'rm -rf "$layout"' EXIT
python3 "$here/mkimage.py" "$layout/oci" "$layers" "$kib" >"$dir/image.json"
skopeo copy -q --dest-tls-verify=false "oci:$layout/oci:latest" "docker://$reg/pullbench:latest"
# The registry must serve the layout's manifest unchanged (no conversion on the way in).
pushed=sha256:$(skopeo inspect --raw --tls-verify=false "docker://$reg/pullbench:latest" | sha256sum | cut -d' ' -f1)
want=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["manifest"])' "$dir/image.json")
if [[ $pushed != "$want" ]]; then
  echo "gen.sh: the registry serves manifest $pushed, the layout has $want" >&2
  exit 1
fi
