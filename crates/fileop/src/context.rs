//! The daemonless local source: copy a client's directory into an empty
//! snapshot dir the way BuildKit's client sends it over filesync. Owners
//! become 0:0, modes, times, xattrs, symlink targets and hard links are kept,
//! symlinks are never followed, and only files, dirs and symlinks travel.
//!
//! The walk (what is sent, in which order) is separate from what is done with
//! each entry ([`Sink`]): [`sync_context`] copies everything, and
//! `crate::transfer` compares against or reuses a previous transfer.

use std::collections::BTreeSet;
use std::fs::{self, Metadata};
use std::io;
use std::ops::ControlFlow;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{FileOpError, Result};
use crate::pattern::{MatchInfo, PatternMatcher, contains_wildcards, glob_match};

/// `.dockerignore` as a predicate: (relative path, is_dir) -> excluded.
pub type ExcludeFn = Box<dyn Fn(&str, bool) -> bool + Send + Sync>;
/// For an excluded dir: true when nothing below it can be re-included.
pub type SkipDirFn = Box<dyn Fn(&str) -> bool + Send + Sync>;

/// Filters a client applies before sending its directory.
#[derive(Default)]
pub struct ContextFilter {
    /// `.dockerignore`: true when the relative path (is_dir) is excluded.
    pub exclude: Option<ExcludeFn>,
    /// For an excluded dir: true when no exception can match below it, so
    /// the walk may skip it entirely.
    pub may_skip_dir: Option<SkipDirFn>,
    /// `local.followpaths`: only these paths (their parents, and the targets
    /// of symlinks on the way) are sent when non-empty.
    pub follow_paths: Vec<String>,
    /// `local.includepatterns`: only matching paths (and their parents).
    pub include_patterns: Vec<String>,
}

/// What a sync transferred.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Files sent (copied, linked to an earlier file of the same inode, or reused).
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries left out by the filters, plus sockets and devices.
    pub skipped: u64,
    /// Files hard-linked from the previous transfer's layer instead of copied.
    pub reused: u64,
}

/// Copies `src` into the empty directory `dest`.
pub fn sync_context(src: &Path, dest: &Path, filter: &ContextFilter) -> Result<SyncStats> {
    crate::transfer::copy_context(src, dest, filter, None, None).map(|(stats, _)| stats)
}

/// What the walk does with each entry it sends.
pub(crate) trait Sink {
    /// A directory that is sent, when it must exist: before anything in it.
    fn dir(&mut self, src: &Path, rel: &[u8], meta: &Metadata) -> Result<Flow>;
    /// A sent directory once everything in it was sent (its times go last).
    fn dir_done(&mut self, src: &Path, rel: &[u8], meta: &Metadata) -> Result<()>;
    /// A file or symlink that is sent.
    fn leaf(&mut self, src: &Path, rel: &[u8], meta: &Metadata) -> Result<Flow>;
}

/// `Break` stops the walk (a sink that has seen enough).
pub(crate) type Flow = ControlFlow<()>;

/// `/rel` as errors show a path.
pub(crate) fn shown(rel: &[u8]) -> String {
    format!("/{}", String::from_utf8_lossy(rel))
}

/// Walks `src` as the client sends it, calling `sink` for every entry that is sent, in send
/// order. Returns how many entries the filters left out (plus sockets and devices).
pub(crate) fn walk(src: &Path, filter: &ContextFilter, sink: &mut dyn Sink) -> Result<u64> {
    let mut includes = filter.include_patterns.clone();
    if !filter.follow_paths.is_empty()
        && let Some(targets) = follow_links(src, &filter.follow_paths)?
    {
        includes.extend(targets);
    }
    let include = if includes.is_empty() {
        None
    } else {
        Some(PatternMatcher::new(&includes)?)
    };
    // Prefix-only includes let the walk skip dirs no pattern reaches into.
    let prefixes: Option<Vec<String>> = include.as_ref().and_then(|m| {
        m.patterns()
            .iter()
            .filter(|p| !p.exclusion)
            .map(|p| {
                let p = p.text.strip_suffix("/**").unwrap_or(&p.text);
                (!p.contains(['*', '[', ']', '?', '^', '\\'])).then(|| p.to_string())
            })
            .collect()
    });
    let mut w = Walker {
        filter,
        include,
        prefixes,
        pending: Vec::new(),
        skipped: 0,
        sink,
    };
    // A sink that stopped the walk has seen what it needed.
    let _ = w.dir(src, b"", "", &MatchInfo::default())?;
    Ok(w.skipped)
}

struct PendingDir {
    src: PathBuf,
    rel: Vec<u8>,
    meta: Metadata,
    created: bool,
}

struct Walker<'a> {
    filter: &'a ContextFilter,
    include: Option<PatternMatcher>,
    prefixes: Option<Vec<String>>,
    /// Directories on the current path, created once something in them is sent.
    pending: Vec<PendingDir>,
    skipped: u64,
    sink: &'a mut dyn Sink,
}

impl Walker<'_> {
    fn dir(&mut self, src: &Path, rel: &[u8], rel_str: &str, pinc: &MatchInfo) -> Result<Flow> {
        let read_err = |e| FileOpError::io("read", shown(rel), e);
        let mut names: Vec<_> = fs::read_dir(src)
            .map_err(read_err)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(read_err)?;
        names.sort();
        for name in names {
            let s = src.join(&name);
            let n = String::from_utf8_lossy(name.as_bytes());
            let (crel_str, crel) = if rel.is_empty() {
                (n.into_owned(), name.as_bytes().to_vec())
            } else {
                let mut b = Vec::with_capacity(rel.len() + 1 + name.len());
                b.extend_from_slice(rel);
                b.push(b'/');
                b.extend_from_slice(name.as_bytes());
                (format!("{rel_str}/{n}"), b)
            };
            let meta =
                fs::symlink_metadata(&s).map_err(|e| FileOpError::io("lstat", shown(&crel), e))?;
            let ft = meta.file_type();
            if !(ft.is_dir() || ft.is_file() || ft.is_symlink()) {
                self.skipped += 1;
                continue;
            }
            let mut send = true;
            let mut inc = MatchInfo::default();
            if let Some(m) = &self.include {
                let (hit, info) = m.matches_with_parent(&crel_str, pinc);
                inc = info;
                if !hit {
                    if ft.is_dir() && !self.prefix_reaches(&crel_str) {
                        self.skipped += 1;
                        continue;
                    }
                    send = false;
                }
            }
            if let Some(ex) = &self.filter.exclude
                && ex(&crel_str, ft.is_dir())
            {
                let skip_dir = self
                    .filter
                    .may_skip_dir
                    .as_ref()
                    .is_some_and(|f| f(&crel_str));
                if !ft.is_dir() || skip_dir {
                    self.skipped += 1;
                    continue;
                }
                send = false;
            }
            if !send && !ft.is_dir() {
                self.skipped += 1;
                continue;
            }
            if send && self.create_pending()?.is_break() {
                return Ok(Flow::Break(()));
            }
            if ft.is_dir() {
                self.pending.push(PendingDir {
                    src: s.clone(),
                    rel: crel.clone(),
                    meta,
                    created: false,
                });
                let r = if send {
                    self.create_pending()
                } else {
                    Ok(Flow::Continue(()))
                };
                let r = match r {
                    Ok(Flow::Continue(())) => self.dir(&s, &crel, &crel_str, &inc),
                    other => other,
                };
                let p = self.pending.pop();
                if r?.is_break() {
                    return Ok(Flow::Break(()));
                }
                match p {
                    // Times last: adding children changed the dir's mtime.
                    Some(p) if p.created => self.sink.dir_done(&p.src, &p.rel, &p.meta)?,
                    _ => self.skipped += 1,
                }
            } else if self.sink.leaf(&s, &crel, &meta)?.is_break() {
                return Ok(Flow::Break(()));
            }
        }
        Ok(Flow::Continue(()))
    }

    /// With prefix-only includes, whether any pattern lies below `rel`.
    fn prefix_reaches(&self, rel: &str) -> bool {
        match &self.prefixes {
            Some(ps) => {
                let dir = format!("{rel}/");
                ps.iter().any(|p| format!("{p}/").starts_with(&dir))
            }
            None => true,
        }
    }

    fn create_pending(&mut self) -> Result<Flow> {
        for p in self.pending.iter_mut().filter(|p| !p.created) {
            p.created = true;
            if self.sink.dir(&p.src, &p.rel, &p.meta)?.is_break() {
                return Ok(Flow::Break(()));
            }
        }
        Ok(Flow::Continue(()))
    }
}

/// fsutil's `FollowLinks`: the follow paths plus, for every symlink met on
/// the way, the link and (recursively) its target, as include patterns.
/// None when a path is the whole context (no filtering).
fn follow_links(root: &Path, paths: &[String]) -> Result<Option<Vec<String>>> {
    let mut resolved = BTreeSet::new();
    for p in paths {
        follow_one(root, p, &mut resolved, 0)?;
    }
    let mut out: Vec<String> = Vec::new();
    for s in resolved {
        if s == "." {
            return Ok(None);
        }
        if out.last().is_some_and(|l| s.starts_with(&format!("{l}/"))) {
            continue;
        }
        out.push(s);
    }
    Ok(Some(out))
}

fn follow_one(root: &Path, p: &str, resolved: &mut BTreeSet<String>, depth: usize) -> Result<()> {
    if depth > 40 {
        return Err(FileOpError::TooManyLinks {
            path: p.to_string(),
        });
    }
    let comps: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if comps.is_empty() {
        resolved.insert(".".to_string());
        return Ok(());
    }
    let mut current = String::new();
    for (i, c) in comps.iter().enumerate() {
        if !current.is_empty() {
            current.push('/');
        }
        current.push_str(c);
        let rest = comps[i + 1..].join("/");
        let targets = link_targets(root, &current)?;
        if (rest.is_empty() || !targets.is_empty()) && resolved.contains(&current) {
            return Ok(());
        }
        if !targets.is_empty() {
            resolved.insert(current.clone());
            for t in targets {
                follow_one(root, &format!("{t}/{rest}"), resolved, depth + 1)?;
            }
            return Ok(());
        }
        if rest.is_empty() {
            resolved.insert(current);
            return Ok(());
        }
    }
    Ok(())
}

/// Targets (context-absolute) of the symlink(s) named by `rel`, whose last
/// component may be a glob.
fn link_targets(root: &Path, rel: &str) -> Result<Vec<String>> {
    let (dir, base) = rel.rsplit_once('/').unwrap_or(("", rel));
    let mut names = Vec::new();
    if contains_wildcards(base) {
        if let Ok(rd) = fs::read_dir(root.join(dir)) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if glob_match(base, &n)? {
                    names.push(n);
                }
            }
        }
    } else {
        names.push(base.to_string());
    }
    let mut out = Vec::new();
    for n in names {
        let p = root.join(dir).join(&n);
        let Ok(m) = fs::symlink_metadata(&p) else {
            continue;
        };
        if !m.file_type().is_symlink() {
            continue;
        }
        let t = fs::read_link(&p).map_err(|e| FileOpError::io("read link", rel, e))?;
        let t = t.to_string_lossy();
        let joined = if t.starts_with('/') {
            t.into_owned()
        } else {
            format!("{dir}/{t}")
        };
        out.push(
            crate::resolve::clean(&joined)
                .trim_start_matches('/')
                .to_string(),
        );
    }
    Ok(out)
}
