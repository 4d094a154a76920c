//! Op digests must equal BuildKit's: every op of every conformance `llb.pb`, decoded and encoded
//! again, hashes to the digest BuildKit recorded for it in `llb.json`.

use kiln_proto::Message;
use kiln_proto::pb;
use sha2::{Digest, Sha256};
use std::path::PathBuf;

fn cases_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance/kiln-cases")
}

fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[test]
fn reencoded_ops_keep_buildkit_digests() {
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(cases_dir()).unwrap().flatten().collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let pb_path = entry.path().join("llb.pb");
        if !pb_path.exists() {
            continue;
        }
        let def = pb::Definition::decode(&*std::fs::read(&pb_path).unwrap()).unwrap();
        let json = std::fs::read_to_string(entry.path().join("llb.json")).unwrap();
        let want: Vec<String> = json
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["Digest"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(def.def.len(), want.len(), "{}", pb_path.display());
        for (raw, want) in def.def.iter().zip(&want) {
            assert_eq!(&digest(raw), want, "raw bytes of {}", pb_path.display());
            let op = pb::Op::decode(&raw[..]).unwrap();
            assert_eq!(
                &digest(&kiln_proto::marshal_op(&op)),
                want,
                "re-encoded op in {}",
                pb_path.display()
            );
            assert!(def.metadata.contains_key(want), "metadata for {want}");
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} ops checked");
}

/// BuildKit's TestIngestDigest: LLB written by the old gogo encoder loads, and its ops re-encode
/// to the digests the current encoder gives them.
#[test]
fn gogoproto_fixture_loads() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/buildkit/llb/gogoproto.data");
    let def = pb::Definition::decode(&*std::fs::read(path).unwrap()).unwrap();
    assert_eq!(def.def.len(), 2);
    let ops: Vec<pb::Op> = def
        .def
        .iter()
        .map(|b| pb::Op::decode(&b[..]).unwrap())
        .collect();
    let digests: Vec<String> = ops
        .iter()
        .map(|op| digest(&kiln_proto::marshal_op(op)))
        .collect();
    match &ops[0].op {
        Some(pb::op::Op::Source(s)) => {
            assert_eq!(
                s.identifier,
                "docker-image://docker.io/library/busybox:latest"
            )
        }
        other => panic!("first op is not a source: {other:?}"),
    }
    assert_eq!(ops[1].inputs.len(), 1);
    // The input reference in the second op, once recomputed, names the first op.
    let mut second = ops[1].clone();
    second.inputs[0].digest = digests[0].clone();
    let re = pb::Op::decode(&*second.encode_to_vec()).unwrap();
    assert_eq!(re.inputs[0].digest, digests[0]);
    assert_eq!(def.metadata.len(), 2);
}
