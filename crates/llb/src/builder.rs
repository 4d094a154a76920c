//! Building LLB: a vertex is an op plus its metadata and the outputs it reads; marshalling walks
//! the graph depth first (inputs before the vertex, as BuildKit's `llb.Definition` does) and
//! appends the terminal op that names the result.

use kiln_proto::pb;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::sync::Arc;

/// An op whose inputs are other vertices' outputs. Immutable once built; share with `Arc`.
#[derive(Debug)]
pub struct Vertex {
    op: pb::Op,
    bytes: Vec<u8>,
    digest: String,
    metadata: pb::OpMetadata,
    inputs: Vec<Output>,
}

/// One output of a vertex: what later ops read and what a build returns.
#[derive(Debug, Clone)]
pub struct Output {
    pub vertex: Arc<Vertex>,
    pub index: i64,
}

/// sha256 of BuildKit's encoding of `op`, as `sha256:<hex>`.
pub fn op_digest(op: &pb::Op) -> String {
    digest_bytes(&kiln_proto::marshal_op(op))
}

fn digest_bytes(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Vertex {
    /// Builds a vertex. `op.inputs` is filled from `inputs` (in order); whatever it held is replaced.
    pub fn new(mut op: pb::Op, inputs: Vec<Output>, metadata: pb::OpMetadata) -> Arc<Vertex> {
        op.inputs = inputs
            .iter()
            .map(|o| pb::Input {
                digest: o.vertex.digest.clone(),
                index: o.index,
            })
            .collect();
        let bytes = kiln_proto::marshal_op(&op);
        let digest = digest_bytes(&bytes);
        Arc::new(Vertex {
            op,
            bytes,
            digest,
            metadata,
            inputs,
        })
    }

    /// Output 0 of a new vertex: the common case.
    pub fn output(op: pb::Op, inputs: Vec<Output>, metadata: pb::OpMetadata) -> Output {
        Output {
            vertex: Vertex::new(op, inputs, metadata),
            index: 0,
        }
    }

    pub fn op(&self) -> &pb::Op {
        &self.op
    }
    pub fn digest(&self) -> &str {
        &self.digest
    }
    pub fn metadata(&self) -> &pb::OpMetadata {
        &self.metadata
    }
    pub fn inputs(&self) -> &[Output] {
        &self.inputs
    }
}

/// Marshals the graph that ends in `result` into a Definition: every op once, inputs before the
/// ops that read them, then the terminal op (no body, one input) as BuildKit writes it.
/// `None` marshals an empty result (a build of `scratch` with nothing in it).
pub fn marshal(result: Option<&Output>) -> pb::Definition {
    let mut def = pb::Definition::default();
    let mut seen = HashSet::new();
    if let Some(out) = result {
        visit(&out.vertex, &mut seen, &mut def);
        let terminal = pb::Op {
            inputs: vec![pb::Input {
                digest: out.vertex.digest.clone(),
                index: out.index,
            }],
            ..Default::default()
        };
        let bytes = kiln_proto::marshal_op(&terminal);
        let digest = digest_bytes(&bytes);
        def.def.push(bytes);
        def.metadata.insert(digest, terminal_metadata());
    }
    def
}

fn terminal_metadata() -> pb::OpMetadata {
    let mut caps = std::collections::BTreeMap::new();
    for c in ["constraints", "meta.description", "platform"] {
        caps.insert(c.to_string(), true);
    }
    pb::OpMetadata {
        caps,
        ..Default::default()
    }
}

fn visit(v: &Arc<Vertex>, seen: &mut HashSet<String>, def: &mut pb::Definition) {
    if seen.contains(&v.digest) {
        return;
    }
    for input in &v.inputs {
        visit(&input.vertex, seen, def);
    }
    seen.insert(v.digest.clone());
    def.def.push(v.bytes.clone());
    def.metadata.insert(v.digest.clone(), v.metadata.clone());
}
