//! The scheduler's promises, observed with small operations: cached steps do not run, identical
//! steps run once, independent steps overlap, a failure cancels the rest.

use async_trait::async_trait;
use kiln_solver::*;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct MemCache(Mutex<HashMap<String, Vec<String>>>);

impl Cache<String> for MemCache {
    fn load(&self, key: &str) -> Result<Option<Vec<String>>, String> {
        Ok(self.0.lock().unwrap().get(key).cloned())
    }
    fn save(&self, key: &str, outputs: &[String]) -> Result<(), String> {
        self.0.lock().unwrap().insert(key.into(), outputs.to_vec());
        Ok(())
    }
}

/// Concatenates its inputs and its own tag, after sleeping; counts runs and peak concurrency.
struct Concat {
    tag: String,
    sleep_ms: u64,
    fail: bool,
    runs: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

#[async_trait]
impl Operation<String> for Concat {
    async fn cache_key(&self, inputs: &Inputs<'_, String>) -> Result<String, OpError> {
        let mut key = self.tag.clone();
        for i in 0..inputs.len() {
            key.push('/');
            key.push_str(&inputs.key(i).await?);
        }
        Ok(key)
    }
    async fn execute(
        &self,
        inputs: &Inputs<'_, String>,
        _: &ExecContext,
    ) -> Result<Vec<String>, OpError> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(self.sleep_ms)).await;
        self.running.fetch_sub(1, Ordering::SeqCst);
        if self.fail {
            return Err("exit code 1".into());
        }
        let mut out = String::new();
        for i in 0..inputs.len() {
            out.push_str(&inputs.result(i).await?);
        }
        out.push_str(&self.tag);
        Ok(vec![out])
    }
}

struct Counters {
    runs: Arc<AtomicUsize>,
    running: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Counters {
    fn new() -> Self {
        Counters {
            runs: Default::default(),
            running: Default::default(),
            peak: Default::default(),
        }
    }
    fn op(&self, tag: &str, sleep_ms: u64, fail: bool) -> Arc<dyn Operation<String>> {
        Arc::new(Concat {
            tag: tag.into(),
            sleep_ms,
            fail,
            runs: self.runs.clone(),
            running: self.running.clone(),
            peak: self.peak.clone(),
        })
    }
}

/// a and b independent, c joins them.
fn diamond(c: &Counters, fail_b: bool) -> Arc<Vertex<String>> {
    let a = Vertex::new("a", "a", c.op("a", 100, false), vec![]);
    let b = Vertex::new("b", "b", c.op("b", 100, fail_b), vec![]);
    Vertex::new("c", "c", c.op("c", 1, false), vec![(a, 0), (b, 0)])
}

fn opts(parallelism: usize) -> SolverOptions {
    SolverOptions {
        parallelism,
        no_cache: false,
    }
}

#[tokio::test]
async fn independent_steps_overlap_and_parallelism_one_serialises() {
    let c = Counters::new();
    let solver = Solver::new(Arc::new(MemCache::default()), 4);
    let s = solver.session(opts(4), Progress::discard(), CancellationToken::new());
    assert_eq!(s.build(&diamond(&c, false), 0).await.unwrap(), "abc");
    assert_eq!(c.peak.load(Ordering::SeqCst), 2);

    let c = Counters::new();
    let solver = Solver::new(Arc::new(MemCache::default()), 4);
    let s = solver.session(opts(1), Progress::discard(), CancellationToken::new());
    s.build(&diamond(&c, false), 0).await.unwrap();
    assert_eq!(c.peak.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn cached_graph_runs_nothing_and_reports_cached() {
    let cache = Arc::new(MemCache::default());
    let solver = Solver::new(cache, 4);
    let c = Counters::new();
    let s = solver.session(opts(4), Progress::discard(), CancellationToken::new());
    s.build(&diamond(&c, false), 0).await.unwrap();
    assert_eq!(c.runs.load(Ordering::SeqCst), 3);

    let c2 = Counters::new();
    let (progress, mut rx) = Progress::channel();
    let s = solver.session(opts(4), progress, CancellationToken::new());
    assert_eq!(s.build(&diamond(&c2, false), 0).await.unwrap(), "abc");
    assert_eq!(c2.runs.load(Ordering::SeqCst), 0);
    drop(s);
    let mut cached = vec![];
    while let Ok(ev) = rx.try_recv() {
        if matches!(ev.kind, EventKind::Cached) {
            cached.push(ev.vertex);
        }
    }
    cached.sort();
    assert_eq!(cached, ["a", "b", "c"]);
}

#[tokio::test]
async fn identical_steps_in_concurrent_builds_run_once() {
    let solver = Solver::new(Arc::new(MemCache::default()), 4);
    let c = Counters::new();
    let (g1, g2) = (diamond(&c, false), diamond(&c, false));
    let s1 = solver.session(opts(4), Progress::discard(), CancellationToken::new());
    let s2 = solver.session(opts(4), Progress::discard(), CancellationToken::new());
    let (r1, r2) = tokio::join!(s1.build(&g1, 0), s2.build(&g2, 0));
    assert_eq!(
        (r1.unwrap(), r2.unwrap()),
        ("abc".to_string(), "abc".to_string())
    );
    assert_eq!(c.runs.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_failure_is_named_and_not_cached() {
    let cache = Arc::new(MemCache::default());
    let solver = Solver::new(cache.clone(), 4);
    let c = Counters::new();
    let cancel = CancellationToken::new();
    let s = solver.session(opts(4), Progress::discard(), cancel.clone());
    let err = s.build(&diamond(&c, true), 0).await.unwrap_err();
    assert!(err.to_string().contains("b: exit code 1"), "{err}");
    assert!(cancel.is_cancelled());
    assert!(cache.0.lock().unwrap().keys().all(|k| !k.starts_with('b')));
}
