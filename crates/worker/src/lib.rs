//! The worker: LLB ops as solver operations over the store, snapshots, the container runtime
//! and the sources. The LLB-to-vertex translation lives here, as in BuildKit's llbsolver.

pub mod cache_mounts;
mod context;
pub mod mounts;
mod ops;
pub mod secrets;
pub mod store;

use kiln_llb::{LoadedGraph, pb};
use kiln_solver::{Operation, Vertex};
pub use secrets::{SecretSource, Secrets};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
pub use store::{Ref, Store, StoreError};

/// What a worker needs to run steps.
pub struct Worker {
    pub store: Arc<Store>,
    pub registry: Arc<kiln_registry::Client>,
    pub runtime: Arc<kiln_exec::Runc>,
    pub cache_mounts: cache_mounts::CacheMounts,
}

/// What the client of one build offers and allows.
#[derive(Debug, Clone, Default)]
pub struct BuildSession {
    /// `--local NAME=DIR`.
    pub locals: BTreeMap<String, LocalDir>,
    pub secrets: Arc<Secrets>,
    /// Entitlements the client asked for (`--allow network.host`, `security.insecure`).
    pub entitlements: BTreeSet<String>,
}

/// A directory of the client's, as named by `--local NAME=DIR`.
#[derive(Debug, Clone)]
pub struct LocalDir {
    pub path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("op {digest}: {message}")]
    UnsupportedOp { digest: String, message: String },
}

/// The vertex of one LLB op with its progress name.
pub type LlbVertex = Arc<Vertex<Ref>>;

impl Worker {
    pub fn new(
        store: Arc<Store>,
        registry: Arc<kiln_registry::Client>,
        runtime: Arc<kiln_exec::Runc>,
    ) -> Worker {
        let cache_mounts = cache_mounts::CacheMounts::new(store.root().join("cache-mounts"));
        Worker {
            store,
            registry,
            runtime,
            cache_mounts,
        }
    }

    /// Turns a loaded Definition into solver vertices; returns the result's vertex and output.
    pub fn vertices(
        self: &Arc<Self>,
        graph: &LoadedGraph,
        session: &BuildSession,
    ) -> Result<Option<(LlbVertex, usize)>, WorkerError> {
        let Some(result) = &graph.result else {
            return Ok(None);
        };
        let mut built: HashMap<String, LlbVertex> = HashMap::new();
        // Inputs before the ops that read them: depth-first with an explicit stack, so a deep
        // graph cannot overflow the thread's stack.
        let mut stack = vec![(result.digest.clone(), false)];
        while let Some((digest, expanded)) = stack.pop() {
            if built.contains_key(&digest) {
                continue;
            }
            let op = &graph.ops[&digest];
            if !expanded {
                stack.push((digest.clone(), true));
                for input in &op.op.inputs {
                    if !built.contains_key(&input.digest) {
                        stack.push((input.digest.clone(), false));
                    }
                }
                continue;
            }
            let inputs = op
                .op
                .inputs
                .iter()
                .map(|i| (built[&i.digest].clone(), i.index as usize))
                .collect();
            let operation = self.operation(&digest, &op.op, session)?;
            let name = vertex_name(&op.op, &op.metadata);
            built.insert(
                digest.clone(),
                Vertex::new(digest.clone(), name, operation, inputs),
            );
        }
        Ok(Some((built[&result.digest].clone(), result.index as usize)))
    }

    fn operation(
        self: &Arc<Self>,
        digest: &str,
        op: &pb::Op,
        session: &BuildSession,
    ) -> Result<Arc<dyn Operation<Ref>>, WorkerError> {
        let locals = &session.locals;
        let unsupported = |message: String| WorkerError::UnsupportedOp {
            digest: digest.to_string(),
            message,
        };
        match &op.op {
            Some(pb::op::Op::Source(src)) => {
                if let Some(reference) = src.identifier.strip_prefix("docker-image://") {
                    Ok(Arc::new(ops::source::ImageSource {
                        worker: self.clone(),
                        reference: reference.to_string(),
                        platform: op.platform.clone().unwrap_or_else(kiln_llb::host_platform),
                    }))
                } else if let Some(name) = src.identifier.strip_prefix("local://") {
                    Ok(Arc::new(ops::source::LocalSource {
                        worker: self.clone(),
                        name: name.to_string(),
                        dir: locals.get(name).cloned(),
                        attrs: src.attrs.clone(),
                    }))
                } else if let Some(reference) = src.identifier.strip_prefix("oci-layout://") {
                    let store = src.attrs.get(ops::oci_layout::ATTR_STORE);
                    Ok(Arc::new(ops::oci_layout::OciLayoutSource {
                        worker: self.clone(),
                        reference: reference.to_string(),
                        attrs: src.attrs.clone(),
                        platform: op.platform.clone().unwrap_or_else(kiln_llb::host_platform),
                        dir: store.and_then(|s| locals.get(s)).cloned(),
                    }))
                } else if src.identifier.starts_with("https://")
                    || src.identifier.starts_with("http://")
                {
                    Ok(Arc::new(ops::http::HttpSource {
                        worker: self.clone(),
                        url: src.identifier.clone(),
                        attrs: src.attrs.clone(),
                        resolved: Default::default(),
                    }))
                } else if let Some(id) = src.identifier.strip_prefix("git://") {
                    Ok(Arc::new(ops::git::GitSource::new(
                        self.clone(),
                        id,
                        src.attrs.clone(),
                    )))
                } else {
                    Err(unsupported(format!(
                        "source {:?} is not supported yet (docker-image://, local://, oci-layout://, http(s):// and git:// are)",
                        src.identifier
                    )))
                }
            }
            Some(pb::op::Op::Exec(exec)) => Ok(Arc::new(ops::exec::ExecOperation {
                worker: self.clone(),
                op: op.clone(),
                exec: exec.clone(),
                secrets: session.secrets.clone(),
                entitlements: session.entitlements.clone(),
            })),
            Some(pb::op::Op::File(file)) => Ok(Arc::new(ops::file::FileOperation {
                worker: self.clone(),
                op: op.clone(),
                file: file.clone(),
            })),
            Some(pb::op::Op::Build(_)) => {
                Err(unsupported("build ops are not supported yet".into()))
            }
            Some(pb::op::Op::Merge(merge)) => Ok(Arc::new(ops::merge::MergeOperation {
                op: op.clone(),
                merge: merge.clone(),
            })),
            Some(pb::op::Op::Diff(_)) => Err(unsupported("diff ops are not supported yet".into())),
            Some(pb::op::Op::Passthrough(_)) => {
                Err(unsupported("passthrough ops are not supported yet".into()))
            }
            None => Err(unsupported("op has no body".into())),
        }
    }
}

/// What progress calls a step: the frontend's name for it, or a summary of the op.
fn vertex_name(op: &pb::Op, metadata: &pb::OpMetadata) -> String {
    if let Some(name) = metadata.description.get("llb.customname") {
        return name.clone();
    }
    match &op.op {
        Some(pb::op::Op::Source(s)) => s.identifier.clone(),
        Some(pb::op::Op::Exec(e)) => e
            .meta
            .as_ref()
            .map(|m| m.args.join(" "))
            .unwrap_or_else(|| "exec".into()),
        Some(pb::op::Op::File(f)) => {
            let kinds: Vec<&str> = f
                .actions
                .iter()
                .map(|a| match a.action {
                    Some(pb::file_action::Action::Copy(_)) => "copy",
                    Some(pb::file_action::Action::Mkfile(_)) => "mkfile",
                    Some(pb::file_action::Action::Mkdir(_)) => "mkdir",
                    Some(pb::file_action::Action::Rm(_)) => "rm",
                    Some(pb::file_action::Action::Symlink(_)) => "symlink",
                    None => "?",
                })
                .collect();
            kinds.join(", ")
        }
        _ => "op".into(),
    }
}
