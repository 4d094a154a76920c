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
    /// Every output the op was built from, each object once, in the order the Go client walks
    /// them; two of them may share a digest (and so one input).
    walk: Vec<Output>,
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
    pub fn new(op: pb::Op, inputs: Vec<Output>, metadata: pb::OpMetadata) -> Arc<Vertex> {
        let walk = inputs.clone();
        Vertex::with_walk(op, inputs, metadata, walk)
    }

    /// Like [`Vertex::new`], with the outputs marshalling walks (see [`Vertex::walk`]).
    pub fn with_walk(
        mut op: pb::Op,
        inputs: Vec<Output>,
        metadata: pb::OpMetadata,
        walk: Vec<Output>,
    ) -> Arc<Vertex> {
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
            walk,
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
    /// What marshalling visits before this vertex: each output it was built from, even one
    /// whose digest equals another's (their metadata merge, as in the Go client).
    pub fn walk(&self) -> &[Output] {
        &self.walk
    }
}

/// Marshals the graph that ends in `result` into a Definition: every op once, inputs before the
/// ops that read them, then the terminal op (no body, one input) as BuildKit writes it.
/// `None` marshals an empty result (a build of `scratch` with nothing in it).
pub fn marshal(result: Option<&Output>) -> pb::Definition {
    let mut def = pb::Definition::default();
    let mut seen = Seen::default();
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

/// What marshalling has met: vertices by identity, op bytes by digest. As in the Go client,
/// two vertices with the same digest (two `FROM` of one image) are both walked and their
/// metadata merged, the later one's description keys winning; the op's bytes appear once.
#[derive(Default)]
struct Seen {
    vertices: HashSet<*const Vertex>,
    digests: HashSet<String>,
}

fn visit(v: &Arc<Vertex>, seen: &mut Seen, def: &mut pb::Definition) {
    if !seen.vertices.insert(Arc::as_ptr(v)) {
        return;
    }
    for input in &v.walk {
        visit(&input.vertex, seen, def);
    }
    let md = def.metadata.entry(v.digest.clone()).or_default();
    merge_metadata(md, &v.metadata);
    if seen.digests.insert(v.digest.clone()) {
        def.def.push(v.bytes.clone());
    }
}

/// The Go client's `mergeMetadata`: two vertices with one digest share one metadata entry.
pub fn merge_metadata(into: &mut pb::OpMetadata, from: &pb::OpMetadata) {
    into.ignore_cache |= from.ignore_cache;
    for (k, v) in &from.description {
        into.description.insert(k.clone(), v.clone());
    }
    if from.export_cache.is_some() {
        into.export_cache = from.export_cache;
    }
    for k in from.caps.keys() {
        into.caps.insert(k.clone(), true);
    }
    if from.progress_group.is_some() {
        into.progress_group = from.progress_group.clone();
    }
}
