#!/usr/bin/env python3
"""mkimage.py OUT_DIR LAYERS KIB — an image of LAYERS gzip tar layers, each one file of KIB KiB of
seeded pseudo-random (incompressible) bytes, as an OCI image layout tagged latest. Offline and
deterministic: the same arguments give the same digests. Prints the manifest digest and the layer
digests as JSON."""
import gzip
import hashlib
import io
import json
import os
import random
import sys
import tarfile


def blob(out, data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + d, "size": len(data)}


def layer_tar(i, data):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, payload in (("pull", None), (f"pull/layer-{i:02d}.bin", data)):
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.uid, ti.gid = 0, 0, 0
            if payload is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            else:
                ti.size, ti.mode = len(payload), 0o644
                tar.addfile(ti, io.BytesIO(payload))
    return buf.getvalue()


def main():
    out, layers, kib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)
    rng = random.Random(20261123)
    descs, diff_ids, history = [], [], []
    for i in range(layers):
        raw = layer_tar(i, rng.randbytes(kib * 1024))
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        # Level 1: the bytes are incompressible anyway; mtime 0 keeps the digest stable.
        gz = gzip.compress(raw, compresslevel=1, mtime=0)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **blob(out, gz)})
        history.append({"created": "1970-01-01T00:00:00Z", "created_by": f"mkimage layer {i}"})
    config = {
        "architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    cfg = blob(out, json.dumps(config, separators=(",", ":")).encode())
    manifest = {
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **cfg},
        "layers": descs,
    }
    man = blob(out, json.dumps(manifest, separators=(",", ":")).encode())
    index = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
             "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", **man,
                            "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}
    with open(os.path.join(out, "index.json"), "w") as f:
        json.dump(index, f)
    with open(os.path.join(out, "oci-layout"), "w") as f:
        f.write('{"imageLayoutVersion":"1.0.0"}')
    json.dump({"manifest": man["digest"], "config": cfg["digest"], "layers": [d["digest"] for d in descs],
               "bytes": sum(d["size"] for d in descs)}, sys.stdout)
    print()


if __name__ == "__main__":
    main()
