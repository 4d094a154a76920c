//! LLB ops as solver operations.

pub mod exec;
mod exec_mounts;
pub mod file;
pub mod git;
pub mod http;
pub mod merge;
pub mod oci_layout;
pub mod source;
mod stubs;

use crate::store::Ref;
use kiln_proto::pb;
use kiln_solver::Inputs;
use sha2::{Digest, Sha256};

/// The cache key of an op: its encoding with each input's digest replaced by the digest of that
/// input's cache key (or of what replaces it, such as a content checksum).
pub(crate) fn op_key(op: &pb::Op, input_keys: &[String]) -> String {
    let mut op = op.clone();
    for (input, key) in op.inputs.iter_mut().zip(input_keys) {
        input.digest = format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())));
    }
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(kiln_proto::marshal_op(&op)))
    )
}

/// The cache key of an op that depends on nothing but its own bytes and its inputs' keys (exec,
/// merge). File ops replace some input keys with content checksums and call [`op_key`] directly.
pub(crate) async fn default_cache_key(
    op: &pb::Op,
    inputs: &Inputs<'_, Ref>,
) -> Result<String, kiln_solver::OpError> {
    // Concurrently: computing a key may build an input, and independent inputs build in parallel.
    let keys = futures::future::try_join_all((0..inputs.len()).map(|i| inputs.key(i))).await?;
    Ok(op_key(op, &keys))
}
