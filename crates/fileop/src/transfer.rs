//! Context transfers that remember what they sent: a copy writes a manifest next to itself
//! (`crate::manifest`); the next transfer of the same directory either finds nothing changed
//! ([`context_unchanged`]: the previous copy is used as it is) or makes a new copy in which
//! every file whose stat matches the manifest is a hard link to the previous copy's file
//! ([`sync_context_incremental`]), and only the rest is read from the client.
//!
//! Hard links are safe because copies are layers, which nothing modifies once made: overlay
//! copies a lower file up before writing it. The result is the filesystem a full copy gives,
//! except for what no image, checksum or key sees: a reused file keeps the access time it had
//! when it was first sent, and its link count counts the previous copy's link while that
//! exists.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, lchown, symlink};
use std::path::{Path, PathBuf};

use crate::context::{ContextFilter, Flow, Sink, SyncStats, shown, walk};
use crate::error::{FileOpError, Result};
use crate::fsops::{Time, chmod, set_times};
use crate::manifest::{
    Cursor, Entry, Link, ManifestReader, ManifestWriter, link_target, read_xattrs, write_xattrs,
};

/// A previous transfer to reuse files from.
#[derive(Debug, Clone, Copy)]
pub struct Previous<'a> {
    /// Its copy (a layer directory).
    pub dir: &'a Path,
    /// Its manifest, checked with [`crate::manifest_valid`] first.
    pub manifest: &'a Path,
}

/// True when a transfer of `src` through `filter` would send exactly what `manifest` (whose
/// sha256 is `digest`) lists: the same entries with the same type, mode, size, mtime, symlink
/// target, xattrs and hard-link grouping. Stops at the first difference; reads no file content.
pub fn context_unchanged(
    src: &Path,
    filter: &ContextFilter,
    manifest: &Path,
    digest: &str,
) -> Result<bool> {
    let Ok(reader) = ManifestReader::open(manifest) else {
        return Ok(false);
    };
    let mut c = Checker {
        reader,
        links: HashMap::new(),
        same: true,
    };
    walk(src, filter, &mut c)?;
    Ok(c.same && matches!(c.reader.next_entry(), Ok(None)) && c.reader.digest() == digest)
}

/// Copies `src` into the empty directory `dest` as [`crate::sync_context`] does, taking each
/// unchanged file from `previous` (a hard link) instead of the client, and writes the new
/// manifest to `manifest`. Returns what was sent and the manifest's digest.
pub fn sync_context_incremental(
    src: &Path,
    dest: &Path,
    filter: &ContextFilter,
    previous: Option<Previous<'_>>,
    manifest: &Path,
) -> Result<(SyncStats, String)> {
    let (stats, digest) = copy_context(src, dest, filter, previous, Some(manifest))?;
    Ok((stats, digest.unwrap_or_default()))
}

pub(crate) fn copy_context(
    src: &Path,
    dest: &Path,
    filter: &ContextFilter,
    previous: Option<Previous<'_>>,
    manifest: Option<&Path>,
) -> Result<(SyncStats, Option<String>)> {
    let manifest_err = |e| FileOpError::io("write", "context manifest", e);
    let mut c = Copier {
        dest,
        // An unreadable previous manifest only means nothing is reused.
        previous: previous.and_then(|p| Some((p.dir, Cursor::open(p.manifest).ok()?))),
        manifest: manifest
            .map(ManifestWriter::create)
            .transpose()
            .map_err(manifest_err)?,
        links: HashMap::new(),
        stats: SyncStats::default(),
        fail_midway: std::env::var_os(FAILPOINT_ENV).is_some_and(|v| v == FAILPOINT_MID),
    };
    c.stats.skipped = walk(src, filter, &mut c)?;
    let digest = c
        .manifest
        .map(ManifestWriter::finish)
        .transpose()
        .map_err(manifest_err)?;
    Ok((c.stats, digest))
}

/// Crash tests: `KILN_FAILPOINT=context-transfer-mid` aborts once two files are in the new
/// copy (the variable and its meaning are `kiln_content::blobs::failpoint`'s).
const FAILPOINT_ENV: &str = "KILN_FAILPOINT";
const FAILPOINT_MID: &str = "context-transfer-mid";

struct Copier<'a> {
    dest: &'a Path,
    previous: Option<(&'a Path, Cursor)>,
    manifest: Option<ManifestWriter>,
    /// Inodes with several links already sent: the copy's path and the relative path.
    links: HashMap<(u64, u64), (PathBuf, Vec<u8>)>,
    stats: SyncStats,
    fail_midway: bool,
}

fn io_err(op: &'static str, rel: &[u8]) -> impl FnOnce(io::Error) -> FileOpError {
    move |e| FileOpError::io(op, shown(rel), e)
}

fn times(d: &Path, rel: &[u8], meta: &Metadata) -> Result<()> {
    let at = Time {
        sec: meta.atime(),
        nsec: meta.atime_nsec(),
    };
    let mt = Time {
        sec: meta.mtime(),
        nsec: meta.mtime_nsec(),
    };
    set_times(d, at, mt).map_err(io_err("set times of", rel))
}

impl Copier<'_> {
    fn record(&mut self, e: &Entry) -> Result<Flow> {
        if let Some(m) = &mut self.manifest {
            m.push(e)
                .map_err(|e| FileOpError::io("write", "context manifest", e))?;
        }
        if self.fail_midway && self.stats.files >= 2 {
            std::process::abort();
        }
        Ok(Flow::Continue(()))
    }

    /// Hard-links `d` to the previous copy's file at `rel` when `e` matches what was sent there.
    fn reuse(&mut self, e: &Entry, d: &Path) -> bool {
        let Some((dir, cursor)) = &mut self.previous else {
            return false;
        };
        cursor.find(&e.rel).is_some_and(|old| e.reusable_from(old))
            && fs::hard_link(dir.join(OsStr::from_bytes(&e.rel)), d).is_ok()
    }
}

impl Sink for Copier<'_> {
    fn dir(&mut self, src: &Path, rel: &[u8], meta: &Metadata) -> Result<Flow> {
        let d = self.dest.join(OsStr::from_bytes(rel));
        fs::create_dir(&d).map_err(io_err("mkdir", rel))?;
        lchown(&d, Some(0), Some(0)).map_err(io_err("chown", rel))?;
        chmod(&d, meta.mode()).map_err(io_err("chmod", rel))?;
        let xattrs = read_xattrs(src);
        write_xattrs(&d, &xattrs);
        self.stats.dirs += 1;
        self.record(&Entry::new(rel, meta, Vec::new(), Link::None, xattrs))
    }

    fn dir_done(&mut self, _src: &Path, rel: &[u8], meta: &Metadata) -> Result<()> {
        times(&self.dest.join(OsStr::from_bytes(rel)), rel, meta)
    }

    fn leaf(&mut self, s: &Path, rel: &[u8], meta: &Metadata) -> Result<Flow> {
        let d = self.dest.join(OsStr::from_bytes(rel));
        if meta.file_type().is_symlink() {
            let t = link_target(s).map_err(io_err("read link", rel))?;
            symlink(OsStr::from_bytes(&t), &d).map_err(io_err("symlink", rel))?;
            self.stats.symlinks += 1;
            lchown(&d, Some(0), Some(0)).map_err(io_err("chown", rel))?;
            let xattrs = read_xattrs(s);
            write_xattrs(&d, &xattrs);
            times(&d, rel, meta)?;
            return self.record(&Entry::new(rel, meta, t, Link::None, xattrs));
        }
        let key = (meta.dev(), meta.ino());
        if meta.nlink() > 1
            && let Some((first, first_rel)) = self.links.get(&key)
        {
            fs::hard_link(first, &d).map_err(io_err("hard link", rel))?;
            let link = Link::Of(first_rel.clone());
            self.stats.files += 1;
            return self.record(&Entry::new(rel, meta, Vec::new(), link, Vec::new()));
        }
        let link = if meta.nlink() > 1 {
            Link::First
        } else {
            Link::None
        };
        let entry = Entry::new(rel, meta, Vec::new(), link, read_xattrs(s));
        if self.reuse(&entry, &d) {
            self.stats.reused += 1;
        } else {
            let mut from = fs::File::open(s).map_err(io_err("open", rel))?;
            let mut to = fs::File::create(&d).map_err(io_err("create", rel))?;
            self.stats.bytes += io::copy(&mut from, &mut to).map_err(io_err("copy", rel))?;
            // chown before chmod: chown clears setuid/setgid; xattrs after both (chown clears
            // security.capability).
            lchown(&d, Some(0), Some(0)).map_err(io_err("chown", rel))?;
            chmod(&d, meta.mode()).map_err(io_err("chmod", rel))?;
            write_xattrs(&d, &entry.xattrs);
            times(&d, rel, meta)?;
        }
        if meta.nlink() > 1 {
            self.links.insert(key, (d, rel.to_vec()));
        }
        self.stats.files += 1;
        self.record(&entry)
    }
}

/// Compares a walk with a manifest, entry by entry.
struct Checker {
    reader: ManifestReader,
    links: HashMap<(u64, u64), Vec<u8>>,
    same: bool,
}

impl Checker {
    fn compare(&mut self, e: &Entry) -> Flow {
        match self.reader.next_entry() {
            Ok(Some(old)) if old == *e => Flow::Continue(()),
            _ => {
                self.same = false;
                Flow::Break(())
            }
        }
    }
}

impl Sink for Checker {
    fn dir(&mut self, src: &Path, rel: &[u8], meta: &Metadata) -> Result<Flow> {
        let e = Entry::new(rel, meta, Vec::new(), Link::None, read_xattrs(src));
        Ok(self.compare(&e))
    }

    fn dir_done(&mut self, _: &Path, _: &[u8], _: &Metadata) -> Result<()> {
        Ok(())
    }

    fn leaf(&mut self, s: &Path, rel: &[u8], meta: &Metadata) -> Result<Flow> {
        let e = if meta.file_type().is_symlink() {
            let t = link_target(s).map_err(io_err("read link", rel))?;
            Entry::new(rel, meta, t, Link::None, read_xattrs(s))
        } else if meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            match self.links.get(&key) {
                Some(first) => Entry::new(rel, meta, Vec::new(), Link::Of(first.clone()), vec![]),
                None => {
                    self.links.insert(key, rel.to_vec());
                    Entry::new(rel, meta, Vec::new(), Link::First, read_xattrs(s))
                }
            }
        } else {
            Entry::new(rel, meta, Vec::new(), Link::None, read_xattrs(s))
        };
        Ok(self.compare(&e))
    }
}
