//! Progress events: what a client shows while a build runs.

use std::time::{Duration, Instant};
use tokio::sync::mpsc;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout = 1,
    Stderr = 2,
}

#[derive(Debug, Clone)]
pub enum EventKind {
    /// The step's cache key is known and it is about to run.
    Started,
    /// The step was found in the cache and did not run.
    Cached,
    Completed {
        duration: Duration,
    },
    Failed {
        error: String,
    },
    Log {
        stream: Stream,
        data: Vec<u8>,
    },
    /// A line of information about the build that belongs to no step.
    Info {
        message: String,
    },
}

#[derive(Debug, Clone)]
pub struct Event {
    /// The vertex (op digest), empty for build-wide events.
    pub vertex: String,
    pub name: String,
    pub at: Instant,
    pub kind: EventKind,
}

/// A cheap-to-clone sender of progress events; sending never blocks and never fails the build.
#[derive(Clone, Default)]
pub struct Progress {
    tx: Option<mpsc::UnboundedSender<Event>>,
}

impl Progress {
    pub fn channel() -> (Progress, mpsc::UnboundedReceiver<Event>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Progress { tx: Some(tx) }, rx)
    }

    /// A sink that drops every event.
    pub fn discard() -> Progress {
        Progress { tx: None }
    }

    pub fn send(&self, vertex: &str, name: &str, kind: EventKind) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Event {
                vertex: vertex.to_string(),
                name: name.to_string(),
                at: Instant::now(),
                kind,
            });
        }
    }

    pub fn log(&self, vertex: &str, stream: Stream, data: &[u8]) {
        self.send(
            vertex,
            "",
            EventKind::Log {
                stream,
                data: data.to_vec(),
            },
        );
    }

    pub fn info(&self, message: impl Into<String>) {
        self.send(
            "",
            "",
            EventKind::Info {
                message: message.into(),
            },
        );
    }
}
