//! Progress for Status: engine events turned into `StatusResponse`s and buffered per build ref,
//! so that a Status call made before Solve starts, or after it ends, still sees everything.

use crate::{Event, EventKind};
use futures::Stream;
use kiln_proto::control::{StatusResponse, Vertex, VertexLog, VertexStatus};
use std::collections::{HashMap, VecDeque};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};
use tokio::sync::watch;

/// Builds whose ref someone asked about, running or waiting; past this Status is refused.
const MAX_BUILDS: usize = 1024;
/// Finished builds whose progress stays readable by a late Status call.
const KEEP_FINISHED: usize = 16;
/// Log bytes merged into one StatusResponse, well under the message size limit.
const MAX_BATCH_BYTES: usize = 1 << 20;

pub type StatusStream =
    Pin<Box<dyn Stream<Item = Result<StatusResponse, tonic::Status>> + Send + 'static>>;

#[derive(Debug, thiserror::Error)]
pub enum BuildsError {
    #[error("a build with ref {0:?} has already been started")]
    AlreadyStarted(String),
    #[error("too many builds are being watched ({MAX_BUILDS})")]
    TooMany,
}

/// Progress buffers by build ref.
#[derive(Default)]
pub struct Builds {
    inner: Mutex<BuildsInner>,
}

#[derive(Default)]
struct BuildsInner {
    by_ref: HashMap<String, Arc<BuildLog>>,
    finished: VecDeque<String>,
}

impl Builds {
    fn lock(&self) -> MutexGuard<'_, BuildsInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(inner: &mut BuildsInner, r: &str) -> Result<Arc<BuildLog>, BuildsError> {
        if let Some(log) = inner.by_ref.get(r) {
            return Ok(log.clone());
        }
        if inner.by_ref.len() >= MAX_BUILDS {
            return Err(BuildsError::TooMany);
        }
        let log = Arc::new(BuildLog::new());
        inner.by_ref.insert(r.to_string(), log.clone());
        Ok(log)
    }

    /// Claims `r` for a new Solve; its events go to the returned log.
    pub fn start(&self, r: &str) -> Result<Arc<BuildLog>, BuildsError> {
        let mut inner = self.lock();
        let log = Self::entry(&mut inner, r)?;
        let mut state = log.lock();
        if state.claimed {
            return Err(BuildsError::AlreadyStarted(r.to_string()));
        }
        state.claimed = true;
        drop(state);
        Ok(log)
    }

    /// Marks the build done (its Status streams end) and keeps it readable for a while.
    pub fn finish(&self, r: &str, log: &BuildLog) {
        log.finish();
        let mut inner = self.lock();
        inner.finished.push_back(r.to_string());
        while inner.finished.len() > KEEP_FINISHED {
            if let Some(old) = inner.finished.pop_front() {
                inner.by_ref.remove(&old);
            }
        }
    }

    /// The progress of build `r`, from its first event until it ends.
    pub fn watch(&self, r: &str) -> Result<StatusStream, BuildsError> {
        let log = Self::entry(&mut self.lock(), r)?;
        let rx = log.changed.subscribe();
        let stream =
            futures::stream::unfold((log, rx, 0usize), |(log, mut rx, mut next)| async move {
                loop {
                    let (batch, done) = log.batch(&mut next);
                    if let Some(batch) = batch {
                        return Some((Ok(batch), (log, rx, next)));
                    }
                    if done || rx.changed().await.is_err() {
                        return None;
                    }
                }
            });
        Ok(Box::pin(stream))
    }
}

/// One build's progress as it happened.
pub struct BuildLog {
    state: Mutex<LogState>,
    changed: watch::Sender<()>,
}

#[derive(Default)]
struct LogState {
    items: Vec<StatusResponse>,
    claimed: bool,
    done: bool,
    /// Each vertex as last sent: Status sends a vertex whole on every change.
    vertices: HashMap<String, Vertex>,
}

impl BuildLog {
    fn new() -> BuildLog {
        BuildLog {
            state: Mutex::new(LogState::default()),
            changed: watch::channel(()).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records an engine event.
    pub fn push(&self, ev: &Event) {
        {
            let mut state = self.lock();
            if let Some(item) = state.convert(ev) {
                state.items.push(item);
            }
        }
        self.changed.send_replace(());
    }

    fn finish(&self) {
        self.lock().done = true;
        self.changed.send_replace(());
    }

    /// The items from `*next` on, merged into one response of bounded size.
    fn batch(&self, next: &mut usize) -> (Option<StatusResponse>, bool) {
        let state = self.lock();
        let mut out = StatusResponse::default();
        let mut bytes = 0;
        let start = *next;
        while let Some(item) = state.items.get(*next) {
            let size: usize = item.logs.iter().map(|l| l.msg.len()).sum();
            if *next > start && bytes + size > MAX_BATCH_BYTES {
                break;
            }
            bytes += size;
            out.vertexes.extend(item.vertexes.iter().cloned());
            out.statuses.extend(item.statuses.iter().cloned());
            out.logs.extend(item.logs.iter().cloned());
            out.warnings.extend(item.warnings.iter().cloned());
            *next += 1;
        }
        ((*next > start).then_some(out), state.done)
    }
}

impl LogState {
    fn convert(&mut self, ev: &Event) -> Option<StatusResponse> {
        let at = timestamp(ev.at);
        let mut out = StatusResponse::default();
        if let EventKind::Info { message } = &ev.kind {
            // A line of information: a status row (BuildKit's pull progress rows are these),
            // belonging to no vertex when the engine names none.
            out.statuses.push(VertexStatus {
                id: message.clone(),
                vertex: ev.vertex.clone(),
                name: message.clone(),
                timestamp: Some(at),
                started: Some(at),
                completed: Some(at),
                ..Default::default()
            });
            return Some(out);
        }
        if ev.vertex.is_empty() {
            return None;
        }
        if let EventKind::Log { stream, data } = &ev.kind {
            out.logs.push(VertexLog {
                vertex: ev.vertex.clone(),
                timestamp: Some(at),
                stream: *stream as i64,
                msg: data.clone(),
            });
            return Some(out);
        }
        let v = self
            .vertices
            .entry(ev.vertex.clone())
            .or_insert_with(|| Vertex {
                digest: ev.vertex.clone(),
                ..Default::default()
            });
        if !ev.name.is_empty() {
            v.name = ev.name.clone();
        }
        match &ev.kind {
            EventKind::Started => {
                v.started = Some(at);
            }
            EventKind::Cached => {
                v.cached = true;
                v.started.get_or_insert(at);
                v.completed = Some(at);
            }
            EventKind::Completed { duration } => {
                let began = ev.at.checked_sub(*duration).unwrap_or(ev.at);
                v.started = Some(timestamp(began));
                v.completed = Some(at);
            }
            EventKind::Failed { error } => {
                v.started.get_or_insert(at);
                v.completed = Some(at);
                v.error = error.clone();
            }
            EventKind::Log { .. } | EventKind::Info { .. } => {}
        }
        out.vertexes.push(v.clone());
        Some(out)
    }
}

/// Wall-clock time of an engine instant (events carry monotonic time).
fn timestamp(at: Instant) -> prost_types::Timestamp {
    let ago = Instant::now().saturating_duration_since(at);
    let wall = SystemTime::now()
        .checked_sub(ago)
        .unwrap_or(SystemTime::UNIX_EPOCH);
    prost_types::Timestamp::from(wall)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Stream as LogStream;
    use futures::StreamExt;
    use std::time::Duration;

    fn ev(vertex: &str, name: &str, kind: EventKind) -> Event {
        Event {
            vertex: vertex.into(),
            name: name.into(),
            at: Instant::now(),
            kind,
        }
    }

    #[tokio::test]
    async fn status_before_and_after_solve_sees_everything() {
        let builds = Builds::default();
        let mut early = builds.watch("r1").unwrap();
        let log = builds.start("r1").unwrap();
        assert!(matches!(
            builds.start("r1"),
            Err(BuildsError::AlreadyStarted(_))
        ));
        log.push(&ev("sha256:a", "[1/2] FROM x", EventKind::Started));
        log.push(&ev(
            "sha256:a",
            "",
            EventKind::Log {
                stream: LogStream::Stdout,
                data: b"hi\n".to_vec(),
            },
        ));
        log.push(&ev(
            "sha256:a",
            "",
            EventKind::Completed {
                duration: Duration::from_millis(5),
            },
        ));
        log.push(&ev("sha256:b", "[2/2] RUN y", EventKind::Cached));
        builds.finish("r1", &log);

        let mut late = builds.watch("r1").unwrap();
        for stream in [&mut early, &mut late] {
            let mut all = StatusResponse::default();
            while let Some(item) = stream.next().await {
                let item = item.unwrap();
                all.vertexes.extend(item.vertexes);
                all.logs.extend(item.logs);
            }
            let a = all
                .vertexes
                .iter()
                .rfind(|v| v.digest == "sha256:a")
                .unwrap();
            assert_eq!(a.name, "[1/2] FROM x");
            assert!(a.started.is_some() && a.completed.is_some() && !a.cached);
            let b = all
                .vertexes
                .iter()
                .rfind(|v| v.digest == "sha256:b")
                .unwrap();
            assert!(b.cached && b.completed.is_some());
            assert_eq!(all.logs.len(), 1);
            assert_eq!(all.logs[0].msg, b"hi\n");
            assert_eq!(all.logs[0].stream, 1);
        }
    }

    #[test]
    fn finished_builds_are_forgotten_after_a_while() {
        let builds = Builds::default();
        for i in 0..KEEP_FINISHED + 1 {
            let r = format!("r{i}");
            let log = builds.start(&r).unwrap();
            builds.finish(&r, &log);
        }
        // The oldest was dropped, so its ref can be claimed again.
        assert!(builds.start("r0").is_ok());
        assert!(builds.start("r1").is_err());
    }
}
