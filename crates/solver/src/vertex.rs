//! A vertex: an operation, the outputs it reads, and (once known) its cache key and results.
//! Keys are computed before anything runs, so a cached step never materialises its inputs.

use crate::{EventKind, ExecContext, Operation, Session, SolveError};
use futures::future::{BoxFuture, FutureExt, try_join_all};
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::OnceCell;

type Shared<T> = Result<T, Arc<SolveError>>;

pub struct Vertex<R: Clone + Send + Sync + 'static> {
    id: String,
    name: String,
    op: Arc<dyn Operation<R>>,
    inputs: Vec<(Arc<Vertex<R>>, usize)>,
    key: OnceCell<Shared<String>>,
    /// Outputs found in the cache when the key was computed.
    cached: OnceCell<Option<Vec<R>>>,
    results: OnceCell<Shared<Vec<R>>>,
}

impl<R: Clone + Send + Sync + 'static> Vertex<R> {
    /// `id` identifies the vertex in progress (an op digest); `name` is what users read.
    pub fn new(
        id: impl Into<String>,
        name: impl Into<String>,
        op: Arc<dyn Operation<R>>,
        inputs: Vec<(Arc<Vertex<R>>, usize)>,
    ) -> Arc<Self> {
        Arc::new(Vertex {
            id: id.into(),
            name: name.into(),
            op,
            inputs,
            key: OnceCell::new(),
            cached: OnceCell::new(),
            results: OnceCell::new(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn error(&self, source: crate::OpError) -> Arc<SolveError> {
        Arc::new(SolveError::Op {
            vertex: self.id.clone(),
            name: self.name.clone(),
            source,
        })
    }

    /// The vertex's cache key; also looks the key up, so later stages know whether it hit.
    pub(crate) fn key<'a>(
        self: &'a Arc<Self>,
        s: &'a Session<'_, R>,
    ) -> BoxFuture<'a, Shared<String>> {
        async move {
            self.key
                .get_or_init(|| async {
                    if s.cancel.is_cancelled() {
                        return Err(Arc::new(SolveError::Cancelled));
                    }
                    let inputs = crate::Inputs {
                        session: s,
                        vertex: self,
                    };
                    let key = self
                        .op
                        .cache_key(&inputs)
                        .await
                        .map_err(|e| self.error(e))?;
                    let hit = if self.op.cacheable() && !s.options.no_cache {
                        s.solver.cache.load(&key).map_err(|message| {
                            Arc::new(SolveError::Cache {
                                name: self.name.clone(),
                                message,
                            })
                        })?
                    } else {
                        None
                    };
                    if hit.is_some() {
                        s.progress.send(&self.id, &self.name, EventKind::Cached);
                    }
                    let _ = self.cached.set(hit);
                    Ok(key)
                })
                .await
                .clone()
        }
        .boxed()
    }

    /// All outputs of the vertex, running it unless it is cached or already running.
    pub(crate) fn outputs<'a>(
        self: &'a Arc<Self>,
        s: &'a Session<'_, R>,
    ) -> BoxFuture<'a, Shared<Vec<R>>> {
        async move {
            self.results
                .get_or_init(|| async {
                    let key = self.key(s).await?;
                    if let Some(Some(hit)) = self.cached.get() {
                        return Ok(hit.clone());
                    }
                    self.run_deduplicated(s, key).await
                })
                .await
                .clone()
        }
        .boxed()
    }

    pub(crate) async fn output(self: &Arc<Self>, s: &Session<'_, R>, index: usize) -> Shared<R> {
        let outputs = self.outputs(s).await?;
        outputs.get(index).cloned().ok_or_else(|| {
            self.error(
                format!(
                    "has {} outputs, output {index} was asked for",
                    outputs.len()
                )
                .into(),
            )
        })
    }

    /// Runs the step, joining a run of the same key that another build has in flight.
    async fn run_deduplicated(self: &Arc<Self>, s: &Session<'_, R>, key: String) -> Shared<Vec<R>> {
        let cell = {
            let mut map = s.solver.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.clone()).or_default().clone()
        };
        let result = cell.get_or_init(|| self.run(s, &key)).await.clone();
        s.solver
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
        result
    }

    async fn run(self: &Arc<Self>, s: &Session<'_, R>, key: &str) -> Shared<Vec<R>> {
        // Inputs first, concurrently; an error in one drops the others.
        try_join_all(self.inputs.iter().map(|(v, _)| v.outputs(s))).await?;
        let _permit = tokio::select! {
            permit = s.limit.clone().acquire_owned() => permit.map_err(|_| Arc::new(SolveError::Cancelled))?,
            _ = s.cancel.cancelled() => return Err(Arc::new(SolveError::Cancelled)),
        };
        let started = Instant::now();
        s.progress.send(&self.id, &self.name, EventKind::Started);
        let ctx = ExecContext {
            vertex: self.id.clone(),
            progress: s.progress.clone(),
            cancel: s.cancel.clone(),
        };
        let inputs = crate::Inputs {
            session: s,
            vertex: self,
        };
        let result = tokio::select! {
            r = self.op.execute(&inputs, &ctx) => r,
            _ = s.cancel.cancelled() => Err("cancelled".into()),
        };
        match result {
            Ok(outputs) => {
                if self.op.cacheable() {
                    s.solver.cache.save(key, &outputs).map_err(|message| {
                        Arc::new(SolveError::Cache {
                            name: self.name.clone(),
                            message,
                        })
                    })?;
                }
                s.progress.send(
                    &self.id,
                    &self.name,
                    EventKind::Completed {
                        duration: started.elapsed(),
                    },
                );
                Ok(outputs)
            }
            Err(e) => {
                let cancelled = s.cancel.is_cancelled();
                let err = if cancelled {
                    Arc::new(SolveError::Cancelled)
                } else {
                    self.error(e)
                };
                s.progress.send(
                    &self.id,
                    &self.name,
                    EventKind::Failed {
                        error: err.to_string(),
                    },
                );
                // Stop the rest of the build: nothing else is worth finishing.
                s.cancel.cancel();
                Err(err)
            }
        }
    }
}

/// An operation's view of its inputs.
pub struct Inputs<'a, R: Clone + Send + Sync + 'static> {
    pub(crate) session: &'a Session<'a, R>,
    pub(crate) vertex: &'a Arc<Vertex<R>>,
}

impl<R: Clone + Send + Sync + 'static> Inputs<'_, R> {
    pub fn len(&self) -> usize {
        self.vertex.inputs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vertex.inputs.is_empty()
    }

    /// The cache key of input `i`, with the output index folded in.
    pub async fn key(&self, i: usize) -> Result<String, crate::OpError> {
        let (v, index) = self.input(i)?;
        let key = v.key(self.session).await.map_err(arc_error)?;
        Ok(format!("{key}#{index}"))
    }

    /// The materialised result of input `i`.
    pub async fn result(&self, i: usize) -> Result<R, crate::OpError> {
        let (v, index) = self.input(i)?;
        v.output(self.session, *index).await.map_err(arc_error)
    }

    fn input(&self, i: usize) -> Result<&(Arc<Vertex<R>>, usize), crate::OpError> {
        self.vertex
            .inputs
            .get(i)
            .ok_or_else(|| format!("input {i} does not exist").into())
    }
}

/// Passes an input's failure up unchanged in meaning (the vertex that failed named once).
fn arc_error(e: Arc<SolveError>) -> crate::OpError {
    Box::new(InputFailed(e))
}

#[derive(Debug)]
pub(crate) struct InputFailed(pub(crate) Arc<SolveError>);

impl std::fmt::Display for InputFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for InputFailed {}
