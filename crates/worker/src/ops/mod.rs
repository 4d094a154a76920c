//! LLB ops as solver operations.

pub mod exec;
pub mod file;
pub mod merge;
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

pub(crate) async fn input_keys(
    inputs: &Inputs<'_, Ref>,
) -> Result<Vec<String>, kiln_solver::OpError> {
    let mut keys = Vec::with_capacity(inputs.len());
    for i in 0..inputs.len() {
        keys.push(inputs.key(i).await?);
    }
    Ok(keys)
}
