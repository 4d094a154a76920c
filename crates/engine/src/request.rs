//! A build request and its answer, in the engine's own terms (the Control API maps onto these).

use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct SolveRequest {
    /// A serialized `pb.Definition`, when no frontend is named.
    pub definition: Option<Vec<u8>>,
    /// `dockerfile.v0`, or none for raw LLB.
    pub frontend: Option<String>,
    pub frontend_opts: BTreeMap<String, String>,
    /// `--local NAME=DIR`.
    pub locals: BTreeMap<String, PathBuf>,
    /// `--secret id=…`.
    pub secrets: kiln_worker::Secrets,
    /// `--allow`: the entitlements the client asks for (`network.host`, `security.insecure`).
    pub entitlements: std::collections::BTreeSet<String>,
    pub exports: Vec<ExportRequest>,
    pub no_cache: bool,
    pub parallelism: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub kind: ExportKind,
    pub dest: ExportDest,
    /// The exporter's other attributes (`name=…`), as buildctl passes them.
    pub attrs: BTreeMap<String, String>,
}

pub use kiln_export::{ExportDest, ExportKind};

#[derive(Debug, Clone, Default)]
pub struct SolveResponse {
    /// What BuildKit returns as ExporterResponse (containerimage.digest, …).
    pub exporter_response: BTreeMap<String, String>,
}
