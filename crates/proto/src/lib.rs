//! BuildKit's wire types, generated from the vendored protos in `proto/` (see MANIFEST.md).
//! Modules mirror the proto packages so generated cross-package paths resolve.

/// LLB: `package pb` of BuildKit's ops.proto.
pub mod pb {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/pb.rs"));
}

pub mod moby {
    pub mod buildkit {
        /// The Control API: `package moby.buildkit.v1`.
        pub mod v1 {
            #![allow(clippy::all, missing_docs)]
            include!(concat!(env!("OUT_DIR"), "/moby.buildkit.v1.rs"));
            /// Worker types: `package moby.buildkit.v1.types`.
            pub mod types {
                #![allow(clippy::all, missing_docs)]
                include!(concat!(env!("OUT_DIR"), "/moby.buildkit.v1.types.rs"));
            }
            /// Source policies: `package moby.buildkit.v1.sourcepolicy`.
            pub mod sourcepolicy {
                #![allow(clippy::all, missing_docs)]
                include!(concat!(
                    env!("OUT_DIR"),
                    "/moby.buildkit.v1.sourcepolicy.rs"
                ));
            }
        }
    }
}

pub mod google {
    /// `google.rpc.Status`.
    pub mod rpc {
        #![allow(clippy::all, missing_docs)]
        include!(concat!(env!("OUT_DIR"), "/google.rpc.rs"));
    }
}

/// The Control API under a short name.
pub use moby::buildkit::v1 as control;
pub use prost;
pub use prost::Message;

/// Encodes an op exactly as BuildKit's Go code does, so its sha256 is the op's LLB digest.
///
/// Go's deterministic marshalling writes ordinary fields in field-number order and the members
/// of a `oneof` after them; prost would place the `op` oneof (fields 2-8) before `platform` (10)
/// and `constraints` (11). `Op` is the only message in ops.proto where that changes the bytes.
pub fn marshal_op(op: &pb::Op) -> Vec<u8> {
    let body = op.op.as_ref();
    let head = pb::Op {
        inputs: op.inputs.clone(),
        op: None,
        platform: op.platform.clone(),
        constraints: op.constraints.clone(),
    };
    let mut buf = Vec::with_capacity(head.encoded_len() + 64);
    head.encode(&mut buf).expect("a Vec grows as needed");
    if let Some(body) = body {
        body.encode(&mut buf);
    }
    buf
}
