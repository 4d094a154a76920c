//! The build engine as a library: a solve request in, an exported result and progress out.
//! Used in-process by daemonless `kiln build`; the daemon serves the same engine.

pub mod control;
mod request;
pub mod resolver;
mod source_map;

pub use kiln_solver::{Event, EventKind, Progress, Stream};
pub use request::{ExportDest, ExportKind, ExportRequest, SolveRequest, SolveResponse};

use kiln_solver::{Solver, SolverOptions};
use kiln_worker::{BuildSession, LocalDir, Ref, Store, Worker};
use std::path::PathBuf;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] kiln_worker::StoreError),
    #[error("registry client: {0}")]
    Registry(String),
    #[error(transparent)]
    Frontend(#[from] kiln_frontend::FrontendError),
    #[error("frontend {0:?} is not supported (dockerfile.v0 is built in)")]
    UnknownFrontend(String),
    #[error("loading the build definition: {0}")]
    Load(#[from] kiln_llb::LoadError),
    #[error(transparent)]
    Worker(#[from] kiln_worker::WorkerError),
    /// A step failed; `location` is the Dockerfile line it came from, when known.
    #[error("{}{message}", location.as_ref().map(|l| format!("{l}: ")).unwrap_or_default())]
    Step {
        location: Option<String>,
        message: String,
    },
    #[error("build cancelled")]
    Cancelled,
    #[error("exporting: {0}")]
    Export(#[from] kiln_export::ExportError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Where the engine keeps its state and how it runs steps.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub root: PathBuf,
    /// The OCI runtime binary (runc).
    pub runtime: PathBuf,
    /// How many steps may run at once.
    pub parallelism: usize,
}

pub struct Engine {
    worker: Arc<Worker>,
    solver: Solver<Ref>,
    parallelism: usize,
}

impl Engine {
    /// Opens the store (waiting for another process that holds it) and sweeps what a killed
    /// process left: mounts, containers, temporary files, unrecorded layers.
    pub async fn open(
        config: EngineConfig,
        waiting: impl FnOnce() + Send + 'static,
    ) -> Result<Engine, EngineError> {
        let registry =
            kiln_registry::Client::new().map_err(|e| EngineError::Registry(e.to_string()))?;
        Self::open_with_registry(config, registry, waiting).await
    }

    /// [`Engine::open`] with a registry client the caller configured (hosts, credentials).
    pub async fn open_with_registry(
        config: EngineConfig,
        registry: kiln_registry::Client,
        waiting: impl FnOnce() + Send + 'static,
    ) -> Result<Engine, EngineError> {
        let root = config.root.clone();
        let store = tokio::task::spawn_blocking(move || Store::open(&root, waiting))
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
        let store = Arc::new(store);
        let runtime = kiln_exec::Runc::new(config.root.join("runc"), config.root.join("bundles"))
            .with_binary(config.runtime.clone());
        let _ = runtime.sweep().await;
        let worker = Arc::new(Worker::new(
            store.clone(),
            Arc::new(registry),
            Arc::new(runtime),
        ));
        Ok(Engine {
            solver: Solver::new(store, config.parallelism),
            worker,
            parallelism: config.parallelism,
        })
    }

    /// Runs one build to its exports. Progress events go to `progress`; `cancel` stops it.
    /// Whatever the outcome, layers the build made that no cache record names are removed.
    pub async fn solve(
        &self,
        request: SolveRequest,
        progress: Progress,
        cancel: CancellationToken,
    ) -> Result<SolveResponse, EngineError> {
        let result = self.solve_inner(request, progress, cancel).await;
        let store = self.worker.store.clone();
        let _ = tokio::task::spawn_blocking(move || store.discard_pending()).await;
        result
    }

    async fn solve_inner(
        &self,
        request: SolveRequest,
        progress: Progress,
        cancel: CancellationToken,
    ) -> Result<SolveResponse, EngineError> {
        let session = format!("{:025x}", rand::random::<u128>() >> 28);
        let (definition, image) = match request.frontend.as_deref() {
            None | Some("") => (request.definition.clone().unwrap_or_default(), None),
            Some("dockerfile.v0") => {
                let converted = self.run_dockerfile(&request, &session, &progress).await?;
                (
                    kiln_proto::Message::encode_to_vec(&converted.definition),
                    Some(converted.image),
                )
            }
            Some(other) => return Err(EngineError::UnknownFrontend(other.to_string())),
        };
        let graph = kiln_llb::load(&definition)?;
        let build_session = BuildSession {
            locals: request
                .locals
                .iter()
                .map(|(k, v)| (k.clone(), LocalDir { path: v.clone() }))
                .collect(),
            secrets: Arc::new(request.secrets.clone()),
            entitlements: request.entitlements.clone(),
        };
        let result = match self.worker.vertices(&graph, &build_session)? {
            None => Ref::scratch(),
            Some((vertex, index)) => {
                let options = SolverOptions {
                    parallelism: request.parallelism.unwrap_or(self.parallelism),
                    no_cache: request.no_cache,
                };
                let s = self
                    .solver
                    .session(options, progress.clone(), cancel.clone());
                match s.build(&vertex, index).await {
                    Ok(r) => r,
                    Err(e) => {
                        if cancel.is_cancelled() && matches!(*e, kiln_solver::SolveError::Cancelled)
                        {
                            return Err(EngineError::Cancelled);
                        }
                        return Err(source_map::step_error(&graph, &e));
                    }
                }
            }
        };
        if cancel.is_cancelled() {
            return Err(EngineError::Cancelled);
        }
        let mut response = SolveResponse::default();
        for export in &request.exports {
            let store = self.worker.store.clone();
            let export = export.clone();
            let image = image.clone();
            let result = result.clone();
            let registry = self.worker.registry.clone();
            let metadata = tokio::task::spawn_blocking(move || {
                kiln_export::export(
                    &store,
                    &result,
                    image.as_ref(),
                    &export.kind,
                    export.dest,
                    &export.attrs,
                    &registry,
                )
            })
            .await
            .map_err(|e| EngineError::Internal(e.to_string()))??;
            response.exporter_response.extend(metadata);
        }
        Ok(response)
    }

    async fn run_dockerfile(
        &self,
        request: &SolveRequest,
        session: &str,
        progress: &Progress,
    ) -> Result<kiln_dockerfile::convert::Converted, EngineError> {
        let resolver = resolver::RegistryResolver::new(
            self.worker.registry.clone(),
            tokio::runtime::Handle::current(),
            progress.clone(),
        );
        let opts = request.frontend_opts.clone();
        let locals = request.locals.clone();
        let session = session.to_string();
        let lint_only = kiln_frontend::dockerfile::is_lint_request(&opts);
        let filename = opts
            .get("filename")
            .cloned()
            .unwrap_or_else(|| "Dockerfile".into());
        let result = tokio::task::spawn_blocking(move || {
            let inputs = kiln_frontend::DockerfileInputs {
                opts: &opts,
                locals: &locals,
                session,
            };
            kiln_frontend::build_dockerfile(&inputs, &resolver)
        })
        .await
        .map_err(|e| EngineError::Internal(e.to_string()))?;
        // Build-check findings are shown whether or not they fail the build (`error=true`).
        let show = |warnings: &[kiln_dockerfile::lint::Warning]| {
            for w in warnings {
                progress.info(w.display(&filename));
            }
        };
        let mut converted = match result {
            Ok(c) => c,
            Err(e) => {
                if let kiln_frontend::FrontendError::Convert {
                    source: kiln_dockerfile::convert::ConvertError::Lint { warnings, .. },
                    ..
                } = &e
                {
                    show(warnings);
                }
                return Err(e.into());
            }
        };
        for note in &converted.notes {
            progress.info(note.clone());
        }
        show(&converted.warnings);
        if lint_only {
            // BuildKit's lint result: a summary, and a failing status when anything fired.
            let n = converted.warnings.len();
            let summary = match n {
                0 => "Check complete, no warnings found.".to_string(),
                1 => "Check complete, 1 warning has been found!".to_string(),
                n => format!("Check complete, {n} warnings have been found!"),
            };
            if n > 0 {
                return Err(EngineError::Step {
                    location: None,
                    message: summary,
                });
            }
            progress.info(summary);
            // Nothing to build: a definition whose terminal op has no input solves to nothing.
            converted.definition = kiln_llb::pb::Definition {
                def: vec![kiln_proto::marshal_op(&kiln_llb::pb::Op::default())],
                ..Default::default()
            };
        }
        Ok(converted)
    }
}
