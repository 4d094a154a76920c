#!/usr/bin/env bash
# gen.sh DIR MB FILES — a context of about MB megabytes in FILES files (random bytes, 500 files a
# directory, sizes from half to 1.5 times the mean) plus changed.txt, the file that the
# one-file-change rebuild rewrites.
set -euo pipefail
dir=${1:?usage: gen.sh DIR MB FILES}
mb=${2:?usage: gen.sh DIR MB FILES}
files=${3:?usage: gen.sh DIR MB FILES}
mkdir -p "$dir"
python3 - "$dir" "$mb" "$files" <<'PY'
import os, random, sys
d, mb, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(6)
mean = max(1, mb * 1048576 // n)
# Sizes from half to one and a half times the mean; bytes are slices of one random pool.
pool = os.urandom(2 * mean + 65536)
for i in range(n):
    sub = os.path.join(d, f"d{i // 500:03d}")
    if i % 500 == 0:
        os.makedirs(sub, exist_ok=True)
    size, off = rng.randint(mean // 2, mean + mean // 2), rng.randrange(0, 65536)
    with open(os.path.join(sub, f"f{i:05d}.bin"), "wb") as f:
        f.write(pool[off:off + size])
PY
echo initial >"$dir/changed.txt"
