//! Content checksums for cache keys (BuildKit's cache/contenthash semantics,
//! Kiln's own digest values): a digest over the selected file or tree that
//! covers each entry's relative path, type, mode (permission and special
//! bits), owner, symlink target and file content, and never its times.

use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{FileOpError, Result};
use crate::pattern::{
    MatchInfo, PatternMatcher, contains_wildcards, optional_matcher as matcher, resolve_wildcards,
};
use crate::resolve::{clean, display, resolve};

/// Names the digest scheme below. Checksums are remembered by the store (per layer, path and
/// options), so any change to what a digest covers or how it is computed must change this.
pub const CHECKSUM_VERSION: &str = "kiln-contenthash-1";

/// What to checksum besides the path itself (BuildKit's `ChecksumOpts`).
#[derive(Debug, Clone, Default)]
pub struct ChecksumOpts {
    /// Follow a symlink named as the path (or matched by the wildcard).
    pub follow_links: bool,
    /// Treat `*`, `?` and `[` in the path as a glob.
    pub wildcard: bool,
    /// Only entries matching these (relative to the path) count.
    pub include_patterns: Vec<String>,
    /// Entries matching these do not count.
    pub exclude_patterns: Vec<String>,
    /// With patterns or a wildcard: each of these must prefix some selected path (COPY
    /// --parents), else the path is not found.
    pub required_paths: Vec<String>,
}

/// Digest of `path` inside `root` ("sha256:<hex>"). A missing path is
/// `NotFound` (`"/path": not found`); a wildcard matching nothing is the
/// digest of nothing.
pub fn checksum(root: &Path, path: &str, opts: &ChecksumOpts) -> Result<String> {
    let p = clean(path);
    let filtered =
        opts.wildcard || !opts.include_patterns.is_empty() || !opts.exclude_patterns.is_empty();
    let filter = Filter {
        include: matcher(&opts.include_patterns)?,
        exclude: matcher(&opts.exclude_patterns)?,
        // BuildKit follows the symlinks it selects directly under the path when filtering,
        // where no directory header of the path's own sits above them: under the root, or a
        // path written with a trailing slash.
        follow_children: filtered && opts.follow_links && (p == "/" || path.ends_with('/')),
        base: p.clone(),
        collect: filtered && !opts.required_paths.is_empty(),
        selected: std::cell::RefCell::new(Vec::new()),
    };
    let digest = if !(opts.wildcard && contains_wildcards(&p)) {
        let host = resolve(root, &p, opts.follow_links)?;
        let meta = lstat_or_not_found(&host, &p)?;
        entry_digest(root, &host, &meta, &filter)?
    } else {
        wildcard_digest(root, &p, opts, &filter)?
    };
    if filtered {
        let selected = filter.selected.borrow();
        for req in &opts.required_paths {
            if !selected.iter().any(|s| s.starts_with(req.as_str())) {
                return Err(FileOpError::NotFound { path: req.clone() });
            }
        }
    }
    Ok(digest)
}

/// The digest of what a wildcard path matches: one match is its own digest when its name is
/// the pattern's, otherwise a digest of (match, digest) pairs.
fn wildcard_digest(root: &Path, p: &str, opts: &ChecksumOpts, filter: &Filter) -> Result<String> {
    let matches = match resolve_wildcards(root, p, opts.follow_links) {
        Ok(m) => m,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(e),
    };
    let mut digests = Vec::with_capacity(matches.len());
    for m in &matches {
        let host = resolve(root, m, opts.follow_links)?;
        let meta = lstat_or_not_found(&host, m)?;
        if filter.collect {
            filter.selected.borrow_mut().push(m.clone());
        }
        digests.push((m.clone(), entry_digest(root, &host, &meta, filter)?));
    }
    let base = |s: &str| s.rsplit('/').next().unwrap_or("").to_string();
    if digests.len() == 1 && base(&digests[0].0) == base(p) {
        return Ok(digests.remove(0).1);
    }
    let mut h = Sha256::new();
    for (m, d) in &digests {
        h.update(m.as_bytes());
        h.update([0]);
        h.update(d.as_bytes());
        h.update([0]);
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

fn lstat_or_not_found(host: &Path, shown: &str) -> Result<Metadata> {
    fs::symlink_metadata(host).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc_enotdir()) {
            FileOpError::NotFound {
                path: shown.to_string(),
            }
        } else {
            FileOpError::io("lstat", shown.to_string(), e)
        }
    })
}

fn libc_enotdir() -> i32 {
    rustix::io::Errno::NOTDIR.raw_os_error()
}

struct Filter {
    include: Option<PatternMatcher>,
    exclude: Option<PatternMatcher>,
    /// Follow selected symlinks directly under the path: a dangling one is not found.
    follow_children: bool,
    /// The checksummed path, for naming selected entries root-relative.
    base: String,
    /// Whether `selected` is kept (only required paths need it).
    collect: bool,
    /// Root-relative paths of the selected entries (and the directories above them).
    selected: std::cell::RefCell<Vec<String>>,
}

impl Filter {
    fn select(&self, rel: &str) {
        if !self.collect {
            return;
        }
        let full = if self.base == "/" {
            format!("/{rel}")
        } else {
            format!("{}/{rel}", self.base)
        };
        self.selected.borrow_mut().push(full);
    }
}

/// Digest of one entry and, for a directory, everything selected below it.
fn entry_digest(root: &Path, host: &Path, meta: &Metadata, filter: &Filter) -> Result<String> {
    let mut h = Sha256::new();
    record(&mut h, root, host, "", meta)?;
    if meta.is_dir() {
        let mut pending = Vec::new();
        walk(
            &mut h,
            root,
            host,
            "",
            filter,
            &MatchInfo::default(),
            &MatchInfo::default(),
            &mut pending,
        )?;
    }
    Ok(format!("sha256:{}", hex::encode(h.finalize())))
}

/// A directory whose header is written only once something below it is
/// selected (so include patterns pull in their parents, as in BuildKit).
struct Pending {
    host: std::path::PathBuf,
    rel: String,
    meta: Metadata,
    done: bool,
}

#[allow(clippy::too_many_arguments)]
fn walk(
    h: &mut Sha256,
    root: &Path,
    dir: &Path,
    rel: &str,
    filter: &Filter,
    pinc: &MatchInfo,
    pexc: &MatchInfo,
    pending: &mut Vec<Pending>,
) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| FileOpError::io("read", display(root, dir), e))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()
        .map_err(|e| FileOpError::io("read", display(root, dir), e))?;
    names.sort();
    for name in names {
        let host = dir.join(&name);
        let n = String::from_utf8_lossy(name.as_bytes());
        let crel = if rel.is_empty() {
            n.into_owned()
        } else {
            format!("{rel}/{n}")
        };
        let meta = fs::symlink_metadata(&host)
            .map_err(|e| FileOpError::io("lstat", display(root, &host), e))?;
        let mut included = true;
        let (mut inc, mut exc) = (MatchInfo::default(), MatchInfo::default());
        if let Some(m) = &filter.include {
            let (hit, info) = m.matches_with_parent(&crel, pinc);
            included = hit;
            inc = info;
        }
        let mut excluded = false;
        if let Some(m) = &filter.exclude {
            let (hit, info) = m.matches_with_parent(&crel, pexc);
            excluded = hit;
            exc = info;
        }
        if excluded {
            included = false;
        }
        if included {
            for p in pending.iter_mut().filter(|p| !p.done) {
                record(h, root, &p.host, &p.rel, &p.meta)?;
                filter.select(&p.rel);
                p.done = true;
            }
            record(h, root, &host, &crel, &meta)?;
            filter.select(&crel);
            if filter.follow_children && rel.is_empty() && meta.file_type().is_symlink() {
                let shown = if filter.base == "/" {
                    format!("/{crel}")
                } else {
                    format!("{}/{crel}", filter.base)
                };
                let target = resolve(root, &shown, true)?;
                lstat_or_not_found(&target, &shown)?;
            }
        }
        if meta.is_dir() {
            let exceptions = filter.exclude.as_ref().is_some_and(|e| e.exclusions());
            if excluded && !exceptions {
                continue;
            }
            pending.push(Pending {
                host: host.clone(),
                rel: crel.clone(),
                meta,
                done: included,
            });
            let r = walk(h, root, &host, &crel, filter, &inc, &exc, pending);
            pending.pop();
            r?;
        }
    }
    Ok(())
}

/// Writes one entry's record: path, type, mode, owner, then link target,
/// device number or content digest. Times are deliberately absent.
fn record(h: &mut Sha256, root: &Path, host: &Path, rel: &str, meta: &Metadata) -> Result<()> {
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        b'd'
    } else if ft.is_symlink() {
        b'l'
    } else if ft.is_file() {
        b'f'
    } else if ft.is_fifo() {
        b'p'
    } else if ft.is_char_device() {
        b'c'
    } else if ft.is_block_device() {
        b'b'
    } else {
        b's'
    };
    h.update(rel.as_bytes());
    h.update([0, kind]);
    h.update((meta.mode() & 0o7777).to_le_bytes());
    h.update(meta.uid().to_le_bytes());
    h.update(meta.gid().to_le_bytes());
    match kind {
        b'l' => {
            let t = fs::read_link(host)
                .map_err(|e| FileOpError::io("read link", display(root, host), e))?;
            h.update(t.as_os_str().as_bytes());
            h.update([0]);
        }
        b'f' => {
            let d =
                file_digest(host).map_err(|e| FileOpError::io("read", display(root, host), e))?;
            h.update(d);
        }
        b'c' | b'b' => h.update(meta.rdev().to_le_bytes()),
        _ => {}
    }
    Ok(())
}

/// sha256 of a file's content.
pub(crate) fn file_digest(p: &Path) -> io::Result<[u8; 32]> {
    let mut f = fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}
