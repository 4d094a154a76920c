//! The generic build scheduler: a DAG of vertices, each with a cache key derived from its
//! operation and its inputs, executed at most once, in parallel where independent, bounded by
//! a parallelism limit. No containers, paths or protobuf: operations come in through a trait.

mod progress;
mod vertex;

pub use progress::{Event, EventKind, Progress, Stream};
pub use vertex::{Inputs, Vertex};

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OnceCell, Semaphore};
use tokio_util::sync::CancellationToken;

/// An error from an operation; the solver adds which vertex it came from.
pub type OpError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error("{name}: {source}")]
    Op {
        /// The vertex id (op digest) that failed.
        vertex: String,
        name: String,
        #[source]
        source: OpError,
    },
    #[error("{name}: reading the cache: {message}")]
    Cache { name: String, message: String },
    #[error("build cancelled")]
    Cancelled,
}

/// What a vertex does. `R` is one output (for Kiln's worker: a reference to a snapshot).
#[async_trait]
pub trait Operation<R: Clone + Send + Sync + 'static>: Send + Sync {
    /// The cache key of this step: it must change whenever the result could. Inputs' keys are
    /// available; an input's result may be requested too (content checksums of selectors).
    async fn cache_key(&self, inputs: &Inputs<'_, R>) -> Result<String, OpError>;
    /// Runs the step on its inputs' results and returns one value per output.
    async fn execute(&self, inputs: &Inputs<'_, R>, ctx: &ExecContext) -> Result<Vec<R>, OpError>;
    /// False for steps whose result must not be looked up in or written to the cache.
    fn cacheable(&self) -> bool {
        true
    }
}

/// Where finished vertices are recorded: cache key -> outputs.
pub trait Cache<R>: Send + Sync {
    fn load(&self, key: &str) -> Result<Option<Vec<R>>, String>;
    fn save(&self, key: &str, outputs: &[R]) -> Result<(), String>;
}

/// What a running operation may use: its progress channel and the build's cancellation.
#[derive(Clone)]
pub struct ExecContext {
    pub vertex: String,
    pub progress: Progress,
    pub cancel: CancellationToken,
}

impl ExecContext {
    /// Streams a chunk of the step's output to progress.
    pub fn log(&self, stream: Stream, data: &[u8]) {
        self.progress.log(&self.vertex, stream, data);
    }
}

type Shared<R> = Arc<OnceCell<Result<Vec<R>, Arc<SolveError>>>>;

/// Settings of a solve.
#[derive(Debug, Clone)]
pub struct SolverOptions {
    /// How many operations may execute at once.
    pub parallelism: usize,
    /// Ignore recorded cache (results are still recorded).
    pub no_cache: bool,
}

impl Default for SolverOptions {
    fn default() -> Self {
        SolverOptions {
            parallelism: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(4),
            no_cache: false,
        }
    }
}

/// Runs vertices. One solver may serve many builds at once: identical steps (same cache key)
/// that are in flight together run once.
pub struct Solver<R: Clone + Send + Sync + 'static> {
    cache: Arc<dyn Cache<R>>,
    limit: Arc<Semaphore>,
    in_flight: Mutex<HashMap<String, Shared<R>>>,
}

/// One build's view of the solver: its options, progress and cancellation.
pub struct Session<'s, R: Clone + Send + Sync + 'static> {
    pub(crate) solver: &'s Solver<R>,
    pub(crate) options: SolverOptions,
    pub(crate) progress: Progress,
    pub(crate) cancel: CancellationToken,
    pub(crate) limit: Arc<Semaphore>,
}

impl<R: Clone + Send + Sync + 'static> Solver<R> {
    pub fn new(cache: Arc<dyn Cache<R>>, parallelism: usize) -> Self {
        Solver {
            cache,
            limit: Arc::new(Semaphore::new(parallelism.max(1))),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Starts a build. A parallelism lower than the solver's applies to this build only.
    pub fn session(
        &self,
        options: SolverOptions,
        progress: Progress,
        cancel: CancellationToken,
    ) -> Session<'_, R> {
        let limit = if options.parallelism < self.limit.available_permits() {
            Arc::new(Semaphore::new(options.parallelism.max(1)))
        } else {
            self.limit.clone()
        };
        Session {
            solver: self,
            options,
            progress,
            cancel,
            limit,
        }
    }
}

impl<R: Clone + Send + Sync + 'static> Session<'_, R> {
    /// Builds `vertex` and returns output `index`. On failure the build's cancellation fires,
    /// so steps still running elsewhere in the graph stop.
    pub async fn build(&self, vertex: &Arc<Vertex<R>>, index: usize) -> Result<R, Arc<SolveError>> {
        let result = vertex.output(self, index).await;
        if result.is_err() {
            self.cancel.cancel();
        }
        result
    }

    pub fn progress(&self) -> &Progress {
        &self.progress
    }
}

impl SolveError {
    /// The step whose failure ended the build, looking through failures of inputs.
    pub fn failed_vertex(&self) -> Option<(&str, &str, &(dyn std::error::Error + 'static))> {
        match self {
            SolveError::Op {
                vertex,
                name,
                source,
            } => {
                if let Some(found) = source
                    .downcast_ref::<vertex::InputFailed>()
                    .and_then(|inner| inner.0.failed_vertex())
                {
                    return Some(found);
                }
                Some((vertex, name, source.as_ref()))
            }
            _ => None,
        }
    }
}
