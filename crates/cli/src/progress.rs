//! Progress on stderr in BuildKit's plain format, rendered from the Control API's Status
//! stream: a number per step, its output lines with their time, and CACHED/DONE/ERROR lines.

use anyhow::{Result, bail};
use kiln_proto::control::{StatusResponse, Vertex, VertexLog, VertexStatus};
use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Plain,
    Quiet,
}

impl Mode {
    pub fn parse(s: &str) -> Result<Mode> {
        Ok(match s {
            // The tty view is the plain one for now; both show every step and its output.
            "auto" | "tty" | "plain" => Mode::Plain,
            "quiet" => Mode::Quiet,
            other => bail!("--progress {other:?}: expected auto, tty, plain or quiet"),
        })
    }
}

/// What the display knows of one vertex.
struct Step {
    n: usize,
    started: Option<SystemTime>,
    /// CACHED, DONE or ERROR was printed.
    finished: bool,
    /// Output after the last newline, printed when the step ends.
    partial: String,
}

pub struct Display {
    mode: Mode,
    steps: HashMap<String, Step>,
}

impl Display {
    pub fn new(mode: Mode) -> Display {
        Display {
            mode,
            steps: HashMap::new(),
        }
    }

    /// Renders the Status stream until it ends (the build is over) or fails.
    pub async fn run(mut self, mut stream: tonic::Streaming<StatusResponse>) {
        let stderr = std::io::stderr();
        while let Ok(Some(resp)) = stream.message().await {
            if self.mode == Mode::Quiet {
                continue;
            }
            let text = self.render(&resp);
            if !text.is_empty() {
                let _ = stderr.lock().write_all(text.as_bytes());
            }
        }
    }

    fn step(&mut self, vertex: &str) -> &mut Step {
        let next = self.steps.len() + 1;
        self.steps.entry(vertex.to_string()).or_insert(Step {
            n: next,
            started: None,
            finished: false,
            partial: String::new(),
        })
    }

    /// One response may carry several changes of several vertices (the server batches them):
    /// each vertex's output in the batch is shown before the line that ends it.
    pub fn render(&mut self, resp: &StatusResponse) -> String {
        let mut out = String::new();
        for s in resp.statuses.iter().filter(|s| s.vertex.is_empty()) {
            out.push_str(&format!("{}\n", s.name));
        }
        // Per-vertex lines of this batch, in order; `None` once shown.
        let mut lines: Vec<Option<Line<'_>>> = resp
            .statuses
            .iter()
            .filter(|s| !s.vertex.is_empty())
            .map(|s| Some(Line::Status(s)))
            .chain(resp.logs.iter().map(|l| Some(Line::Log(l))))
            .collect();
        for v in &resp.vertexes {
            let known = self.steps.contains_key(&v.digest);
            let step = self.step(&v.digest);
            if !known && !v.name.is_empty() {
                out.push_str(&format!("#{} {}\n", step.n, v.name));
            }
            if let Some(t) = &v.started {
                step.started = time(t);
            }
            if ends(v) {
                for slot in lines.iter_mut() {
                    if slot.as_ref().is_some_and(|l| l.vertex() == v.digest) {
                        let line = slot.take();
                        self.line(line, &mut out);
                    }
                }
                self.ended(v, &mut out);
            }
        }
        for line in lines {
            self.line(line, &mut out);
        }
        out
    }

    fn line(&mut self, line: Option<Line<'_>>, out: &mut String) {
        match line {
            None => {}
            Some(Line::Status(s)) => {
                let n = self.step(&s.vertex).n;
                out.push_str(&format!("#{n} {}\n", s.name));
            }
            Some(Line::Log(l)) => {
                let at = l.timestamp.as_ref().and_then(time);
                let step = self.step(&l.vertex);
                let since = match (at, step.started) {
                    (Some(at), Some(started)) => at.duration_since(started).unwrap_or_default(),
                    _ => Duration::ZERO,
                };
                step.partial.push_str(&String::from_utf8_lossy(&l.msg));
                while let Some(i) = step.partial.find('\n') {
                    let line: String = step.partial.drain(..=i).collect();
                    out.push_str(&format!(
                        "#{} {:.3} {}\n",
                        step.n,
                        since.as_secs_f64(),
                        line.trim_end_matches('\n')
                    ));
                }
            }
        }
    }

    fn ended(&mut self, v: &Vertex, out: &mut String) {
        let step = self.step(&v.digest);
        if step.finished || !ends(v) {
            return;
        }
        step.finished = true;
        let n = step.n;
        let rest = std::mem::take(&mut step.partial);
        if !rest.is_empty() {
            out.push_str(&format!("#{n} {rest}\n"));
        }
        if !v.error.is_empty() {
            out.push_str(&format!("#{n} ERROR: {}\n", v.error));
        } else if v.cached {
            out.push_str(&format!("#{n} CACHED\n"));
        } else {
            let took = match (
                v.started.as_ref().and_then(time),
                v.completed.as_ref().and_then(time),
            ) {
                (Some(s), Some(c)) => c.duration_since(s).unwrap_or_default(),
                _ => Duration::ZERO,
            };
            out.push_str(&format!("#{n} DONE {:.1}s\n", took.as_secs_f64()));
        }
    }
}

/// A per-vertex line of a response.
enum Line<'a> {
    Status(&'a VertexStatus),
    Log(&'a VertexLog),
}

impl Line<'_> {
    fn vertex(&self) -> &str {
        match self {
            Line::Status(s) => &s.vertex,
            Line::Log(l) => &l.vertex,
        }
    }
}

/// The vertex message says the step is over (cached, done or failed).
fn ends(v: &Vertex) -> bool {
    v.completed.is_some() || v.cached || !v.error.is_empty()
}

fn time(t: &prost_types::Timestamp) -> Option<SystemTime> {
    SystemTime::try_from(*t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(ms: u64) -> Option<prost_types::Timestamp> {
        Some((SystemTime::UNIX_EPOCH + Duration::from_millis(1_000_000 + ms)).into())
    }

    fn vertex(digest: &str, name: &str) -> Vertex {
        Vertex {
            digest: digest.into(),
            name: name.into(),
            ..Default::default()
        }
    }

    #[test]
    fn renders_buildkit_plain_lines_from_a_batched_response() {
        let mut d = Display::new(Mode::Plain);
        let started = Vertex {
            started: ts(0),
            ..vertex("a", "[1/2] RUN echo hi")
        };
        let done = Vertex {
            completed: ts(250),
            ..started.clone()
        };
        let cached = Vertex {
            cached: true,
            started: ts(0),
            completed: ts(0),
            ..vertex("b", "[2/2] COPY x y")
        };
        let resp = StatusResponse {
            vertexes: vec![started, done, cached],
            statuses: vec![VertexStatus {
                name: "[internal] load metadata for busybox".into(),
                ..Default::default()
            }],
            logs: vec![VertexLog {
                vertex: "a".into(),
                timestamp: ts(123),
                stream: 1,
                msg: b"hi\nno newline".to_vec(),
            }],
            ..Default::default()
        };
        assert_eq!(
            d.render(&resp),
            "[internal] load metadata for busybox\n#1 [1/2] RUN echo hi\n\
             #1 0.123 hi\n#1 no newline\n#1 DONE 0.2s\n#2 [2/2] COPY x y\n#2 CACHED\n"
        );
        // A vertex sent again after it ended prints nothing more.
        let again = StatusResponse {
            vertexes: vec![Vertex {
                error: "boom".into(),
                ..vertex("b", "[2/2] COPY x y")
            }],
            ..Default::default()
        };
        assert_eq!(d.render(&again), "");
    }

    #[test]
    fn errors_are_shown_on_the_step() {
        let mut d = Display::new(Mode::Plain);
        let failed = Vertex {
            started: ts(0),
            completed: ts(10),
            error: "process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3"
                .into(),
            ..vertex("a", "[1/1] RUN exit 3")
        };
        let out = d.render(&StatusResponse {
            vertexes: vec![failed],
            ..Default::default()
        });
        assert!(out.ends_with("#1 ERROR: process \"/bin/sh -c exit 3\" did not complete successfully: exit code: 3\n"), "{out}");
    }
}
