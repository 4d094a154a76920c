//! The daemonless local source: copy a client's directory into an empty
//! snapshot dir the way BuildKit's client sends it over filesync. Owners
//! become 0:0, modes, times, xattrs, symlink targets and hard links are kept,
//! symlinks are never followed, and only files, dirs and symlinks travel.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, lchown, symlink};
use std::path::{Path, PathBuf};

use crate::checksum::{ChecksumOpts, checksum};
use crate::error::{FileOpError, Result};
use crate::fsops::{Time, chmod, set_times};
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
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// Entries left out by the filters, plus sockets and devices.
    pub skipped: u64,
    /// `checksum(dest, "/")` of the result.
    pub checksum: String,
}

/// Copies `src` into the empty directory `dest`.
pub fn sync_context(src: &Path, dest: &Path, filter: &ContextFilter) -> Result<SyncStats> {
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
    let mut s = Syncer {
        src,
        dest,
        filter,
        include,
        prefixes,
        links: HashMap::new(),
        pending: Vec::new(),
        stats: SyncStats::default(),
    };
    s.dir(src, dest, "", &MatchInfo::default())?;
    s.stats.checksum = checksum(dest, "/", &ChecksumOpts::default())?;
    Ok(s.stats)
}

struct PendingDir {
    src: PathBuf,
    dst: PathBuf,
    meta: Metadata,
    created: bool,
}

struct Syncer<'a> {
    src: &'a Path,
    dest: &'a Path,
    filter: &'a ContextFilter,
    include: Option<PatternMatcher>,
    prefixes: Option<Vec<String>>,
    links: HashMap<(u64, u64), PathBuf>,
    /// Directories on the current path, created once something in them is sent.
    pending: Vec<PendingDir>,
    stats: SyncStats,
}

impl Syncer<'_> {
    fn err(&self, op: &'static str, p: &Path, e: io::Error) -> FileOpError {
        let shown = p
            .strip_prefix(self.src)
            .or_else(|_| p.strip_prefix(self.dest))
            .map(|r| format!("/{}", r.to_string_lossy()))
            .unwrap_or_else(|_| p.to_string_lossy().into_owned());
        FileOpError::io(op, shown, e)
    }

    fn dir(&mut self, src: &Path, dst: &Path, rel: &str, pinc: &MatchInfo) -> Result<()> {
        let mut names: Vec<_> = fs::read_dir(src)
            .map_err(|e| self.err("read", src, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|e| self.err("read", src, e))?;
        names.sort();
        for name in names {
            let s = src.join(&name);
            let d = dst.join(&name);
            let n = String::from_utf8_lossy(name.as_bytes());
            let crel = if rel.is_empty() {
                n.into_owned()
            } else {
                format!("{rel}/{n}")
            };
            let meta = fs::symlink_metadata(&s).map_err(|e| self.err("lstat", &s, e))?;
            let ft = meta.file_type();
            if !(ft.is_dir() || ft.is_file() || ft.is_symlink()) {
                self.stats.skipped += 1;
                continue;
            }
            let mut send = true;
            let mut inc = MatchInfo::default();
            if let Some(m) = &self.include {
                let (hit, info) = m.matches_with_parent(&crel, pinc);
                inc = info;
                if !hit {
                    if ft.is_dir() && !self.prefix_reaches(&crel) {
                        self.stats.skipped += 1;
                        continue;
                    }
                    send = false;
                }
            }
            if let Some(ex) = &self.filter.exclude
                && ex(&crel, ft.is_dir())
            {
                let skip_dir = self.filter.may_skip_dir.as_ref().is_some_and(|f| f(&crel));
                if !ft.is_dir() || skip_dir {
                    self.stats.skipped += 1;
                    continue;
                }
                send = false;
            }
            if !send && !ft.is_dir() {
                self.stats.skipped += 1;
                continue;
            }
            if send {
                self.create_pending()?;
            }
            if ft.is_dir() {
                self.pending.push(PendingDir {
                    src: s.clone(),
                    dst: d.clone(),
                    meta,
                    created: false,
                });
                if send {
                    self.create_pending()?;
                }
                let r = self.dir(&s, &d, &crel, &inc);
                let p = self.pending.pop();
                r?;
                match p {
                    // Times last: adding children changed the dir's mtime.
                    Some(p) if p.created => self.times(&p.dst, &p.meta)?,
                    _ => self.stats.skipped += 1,
                }
            } else {
                self.entry(&s, &d, &meta)?;
            }
        }
        Ok(())
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

    fn create_pending(&mut self) -> Result<()> {
        for i in 0..self.pending.len() {
            if self.pending[i].created {
                continue;
            }
            let (dst, mode) = (self.pending[i].dst.clone(), self.pending[i].meta.mode());
            fs::create_dir(&dst).map_err(|e| self.err("mkdir", &dst, e))?;
            lchown(&dst, Some(0), Some(0)).map_err(|e| self.err("chown", &dst, e))?;
            chmod(&dst, mode).map_err(|e| self.err("chmod", &dst, e))?;
            let src = self.pending[i].src.clone();
            copy_xattrs(&src, &dst);
            self.pending[i].created = true;
            self.stats.dirs += 1;
        }
        Ok(())
    }

    fn entry(&mut self, s: &Path, d: &Path, meta: &Metadata) -> Result<()> {
        if meta.file_type().is_symlink() {
            let t = fs::read_link(s).map_err(|e| self.err("read link", s, e))?;
            symlink(&t, d).map_err(|e| self.err("symlink", d, e))?;
            self.stats.symlinks += 1;
        } else {
            let key = (meta.dev(), meta.ino());
            if meta.nlink() > 1
                && let Some(first) = self.links.get(&key)
            {
                fs::hard_link(first, d).map_err(|e| self.err("hard link", d, e))?;
                self.stats.files += 1;
                return Ok(());
            }
            let mut from = fs::File::open(s).map_err(|e| self.err("open", s, e))?;
            let mut to = fs::File::create(d).map_err(|e| self.err("create", d, e))?;
            self.stats.bytes += io::copy(&mut from, &mut to).map_err(|e| self.err("copy", d, e))?;
            // chown before chmod: chown clears setuid/setgid.
            lchown(d, Some(0), Some(0)).map_err(|e| self.err("chown", d, e))?;
            chmod(d, meta.mode()).map_err(|e| self.err("chmod", d, e))?;
            if meta.nlink() > 1 {
                self.links.insert(key, d.to_path_buf());
            }
            self.stats.files += 1;
        }
        if meta.file_type().is_symlink() {
            lchown(d, Some(0), Some(0)).map_err(|e| self.err("chown", d, e))?;
        }
        copy_xattrs(s, d);
        self.times(d, meta)
    }

    fn times(&self, d: &Path, meta: &Metadata) -> Result<()> {
        let at = Time {
            sec: meta.atime(),
            nsec: meta.atime_nsec(),
        };
        let mt = Time {
            sec: meta.mtime(),
            nsec: meta.mtime_nsec(),
        };
        set_times(d, at, mt).map_err(|e| self.err("set times of", d, e))
    }
}

fn copy_xattrs(src: &Path, dst: &Path) {
    let Ok(names) = xattr::list(src) else { return };
    for name in names {
        // fsutil drops macOS metadata; the rest travels.
        if name.as_bytes().starts_with(b"com.apple.") {
            continue;
        }
        if let Ok(Some(v)) = xattr::get(src, &name) {
            let _ = xattr::set(dst, &name, &v);
        }
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
