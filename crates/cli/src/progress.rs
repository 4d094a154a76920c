//! Progress on stderr in BuildKit's plain format: a number per step, its output lines with
//! their time, and CACHED/DONE/ERROR lines.

use anyhow::{Result, bail};
use kiln_engine::{Event, EventKind, Stream};
use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::Instant;
use tokio::sync::mpsc::UnboundedReceiver;

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

pub struct Display {
    mode: Mode,
    numbers: HashMap<String, usize>,
    started: HashMap<String, Instant>,
    partial: HashMap<String, String>,
}

impl Display {
    pub fn new(mode: Mode) -> Display {
        Display {
            mode,
            numbers: HashMap::new(),
            started: HashMap::new(),
            partial: HashMap::new(),
        }
    }

    pub async fn run(mut self, mut events: UnboundedReceiver<Event>) {
        let stderr = std::io::stderr();
        let _tty = stderr.is_terminal();
        while let Some(ev) = events.recv().await {
            if self.mode == Mode::Quiet {
                continue;
            }
            let text = self.render(&ev);
            if !text.is_empty() {
                let mut lock = stderr.lock();
                let _ = lock.write_all(text.as_bytes());
            }
        }
    }

    fn number(&mut self, vertex: &str) -> usize {
        let next = self.numbers.len() + 1;
        *self.numbers.entry(vertex.to_string()).or_insert(next)
    }

    fn render(&mut self, ev: &Event) -> String {
        if ev.vertex.is_empty() {
            if let EventKind::Info { message } = &ev.kind {
                return format!("{message}\n");
            }
            return String::new();
        }
        let known = self.numbers.contains_key(&ev.vertex);
        let n = self.number(&ev.vertex);
        let mut out = String::new();
        if !known && !ev.name.is_empty() {
            out.push_str(&format!("#{n} {}\n", ev.name));
        }
        match &ev.kind {
            EventKind::Started => {
                self.started.insert(ev.vertex.clone(), ev.at);
            }
            EventKind::Cached => out.push_str(&format!("#{n} CACHED\n")),
            EventKind::Completed { duration } => {
                out.push_str(&self.flush_partial(&ev.vertex, n));
                out.push_str(&format!("#{n} DONE {:.1}s\n", duration.as_secs_f64()));
            }
            EventKind::Failed { error } => {
                out.push_str(&self.flush_partial(&ev.vertex, n));
                out.push_str(&format!("#{n} ERROR: {error}\n"));
            }
            EventKind::Log { stream: _, data } => {
                let since = self
                    .started
                    .get(&ev.vertex)
                    .map(|s| ev.at.duration_since(*s).as_secs_f64())
                    .unwrap_or(0.0);
                let buf = self.partial.entry(ev.vertex.clone()).or_default();
                buf.push_str(&String::from_utf8_lossy(data));
                while let Some(i) = buf.find('\n') {
                    let line: String = buf.drain(..=i).collect();
                    out.push_str(&format!("#{n} {since:.3} {}\n", line.trim_end_matches('\n')));
                }
            }
            EventKind::Info { message } => out.push_str(&format!("#{n} {message}\n")),
        }
        let _ = Stream::Stdout;
        out
    }

    fn flush_partial(&mut self, vertex: &str, n: usize) -> String {
        match self.partial.remove(vertex) {
            Some(rest) if !rest.is_empty() => format!("#{n} {rest}\n"),
            _ => String::new(),
        }
    }
}
