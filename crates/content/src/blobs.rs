//! Content-addressed blob storage: `root/blobs/sha256/<hex>`, written only through verified,
//! atomic ingests staged under `root/ingest/`.
//!
//! Invariant: a file under `blobs/sha256/` is complete, fsynced, and its sha256 equals its name.
//! Writers stage into a uniquely named temp file that they hold an exclusive `flock` on, so
//! [`BlobStore::sweep_ingest`] can tell an abandoned temp file (its writer died, the lock went
//! with it) from one that another live process sharing the store is still writing.

use sha2::{Digest as _, Sha256};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Environment variable naming the failpoint that should abort the process (crash tests).
pub const FAILPOINT_ENV: &str = "KILN_FAILPOINT";

/// Aborts the process (no unwinding, no destructors) when `KILN_FAILPOINT` equals `name`.
///
/// Crash tests run a child process with the variable set and then check that the store still
/// opens cleanly. Names used here: `blob-before-rename` (temp file written and fsynced, not yet
/// renamed into `blobs/`) and `blob-after-rename` (renamed, directory not yet fsynced).
pub fn failpoint(name: &str) {
    if std::env::var_os(FAILPOINT_ENV).is_some_and(|v| v == name) {
        std::process::abort();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("invalid digest {digest:?}: expected sha256: followed by 64 lowercase hex digits")]
    InvalidDigest { digest: String },
    #[error("blob {digest} not found")]
    NotFound { digest: String },
    #[error("digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { expected: String, actual: String },
    #[error("size mismatch for {digest}: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("blob {digest} is {size} bytes, over the limit of {max}")]
    TooLarge { digest: String, size: u64, max: u64 },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BlobError + 'a {
    move |source| BlobError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Checks that `digest` is `sha256:` + 64 lowercase hex digits and returns the hex part.
/// Only a string that passes this check ever becomes a path component.
pub fn digest_hex(digest: &str) -> Result<&str, BlobError> {
    let hex = digest.strip_prefix("sha256:").filter(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    hex.ok_or_else(|| BlobError::InvalidDigest {
        digest: digest.to_string(),
    })
}

/// The `sha256:<hex>` digest of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    blobs: PathBuf,
    ingest: PathBuf,
    sources: PathBuf,
}

/// At most this many source repositories are remembered per blob (a hint, not a catalogue).
const MAX_SOURCES: usize = 8;

/// What a computed ingest stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    pub digest: String,
    pub size: u64,
    pub path: PathBuf,
}

impl BlobStore {
    /// Opens (creating if needed) a store rooted at `root`.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        let blobs = root.join("blobs").join("sha256");
        let ingest = root.join("ingest");
        let sources = root.join("sources");
        fs::create_dir_all(&blobs).map_err(io_err("create", &blobs))?;
        fs::create_dir_all(&ingest).map_err(io_err("create", &ingest))?;
        Ok(Self {
            blobs,
            ingest,
            sources,
        })
    }

    /// Remembers that `digest` was pulled from `source` (`registry/repository`), so a push to
    /// another repository of that registry can mount it instead of uploading it. Best effort:
    /// the newest source goes first, the list is bounded, and a lost race loses only a hint.
    pub fn record_source(&self, digest: &str, source: &str) -> Result<(), BlobError> {
        let hex = digest_hex(digest)?;
        if source.is_empty() || source.contains(['\n', '\r']) {
            return Ok(());
        }
        let mut list = self.sources(digest);
        if list.first().is_some_and(|s| s == source) {
            return Ok(());
        }
        list.retain(|s| s != source);
        list.insert(0, source.to_string());
        list.truncate(MAX_SOURCES);
        fs::create_dir_all(&self.sources).map_err(io_err("create", &self.sources))?;
        let path = self.sources.join(hex);
        let temp = self.sources.join(format!(".{hex}.{}", unique_name()));
        fs::write(&temp, list.join("\n") + "\n").map_err(io_err("write", &temp))?;
        fs::rename(&temp, &path).map_err(io_err("rename", &path))
    }

    /// The repositories `digest` is known to have come from, newest first.
    pub fn sources(&self, digest: &str) -> Vec<String> {
        let Ok(hex) = digest_hex(digest) else {
            return Vec::new();
        };
        fs::read_to_string(self.sources.join(hex))
            .map(|s| {
                s.lines()
                    .filter(|l| !l.is_empty())
                    .take(MAX_SOURCES)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Where the blob lives (whether or not it is present).
    pub fn path(&self, digest: &str) -> Result<PathBuf, BlobError> {
        Ok(self.blobs.join(digest_hex(digest)?))
    }

    /// Whether the blob is present; an invalid digest is never present.
    pub fn has(&self, digest: &str) -> bool {
        self.path(digest).is_ok_and(|p| p.is_file())
    }

    pub fn size(&self, digest: &str) -> Result<u64, BlobError> {
        let path = self.path(digest)?;
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(BlobError::NotFound {
                digest: digest.to_string(),
            }),
            Err(e) => Err(io_err("stat", &path)(e)),
        }
    }

    /// Reads a whole blob, refusing one larger than `max` bytes (configs, manifests).
    pub fn read_to_vec(&self, digest: &str, max: u64) -> Result<Vec<u8>, BlobError> {
        let path = self.path(digest)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BlobError::NotFound {
                    digest: digest.to_string(),
                });
            }
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        let size = file.metadata().map_err(io_err("stat", &path))?.len();
        if size > max {
            return Err(BlobError::TooLarge {
                digest: digest.to_string(),
                size,
                max,
            });
        }
        let mut buf = Vec::with_capacity(size as usize);
        // Cap the read too, in case the file grew after the stat.
        file.take(max + 1)
            .read_to_end(&mut buf)
            .map_err(io_err("read", &path))?;
        if buf.len() as u64 > max {
            let size = buf.len() as u64;
            return Err(BlobError::TooLarge {
                digest: digest.to_string(),
                size,
                max,
            });
        }
        Ok(buf)
    }

    /// Starts a verified ingest: write the content, then [`Ingest::commit`].
    pub fn begin(
        &self,
        expected_digest: &str,
        expected_size: Option<u64>,
    ) -> Result<Ingest, BlobError> {
        digest_hex(expected_digest)?;
        self.begin_inner(Some(expected_digest.to_string()), expected_size)
    }

    /// Starts an ingest whose digest is whatever the written bytes hash to (content we produce
    /// ourselves, e.g. a layer being compressed); finish with [`Ingest::commit_computed`].
    pub fn begin_computed(&self) -> Result<Ingest, BlobError> {
        self.begin_inner(None, None)
    }

    fn begin_inner(
        &self,
        expected: Option<String>,
        expected_size: Option<u64>,
    ) -> Result<Ingest, BlobError> {
        let (file, temp) = self.create_locked_temp()?;
        Ok(Ingest {
            store: self.clone(),
            file: Some(BufWriter::with_capacity(128 * 1024, file)),
            temp,
            hasher: Sha256::new(),
            written: 0,
            expected,
            expected_size,
        })
    }

    /// Creates a fresh temp file under `ingest/` and takes its lock. A sweep may delete the name
    /// between create and lock, so re-check that the name still refers to our inode.
    fn create_locked_temp(&self) -> Result<(File, PathBuf), BlobError> {
        loop {
            let temp = self.ingest.join(unique_name());
            let file = match OpenOptions::new().write(true).create_new(true).open(&temp) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io_err("create", &temp)(e)),
            };
            file.lock().map_err(io_err("lock", &temp))?;
            let ours = file.metadata().map_err(io_err("stat", &temp))?;
            match fs::symlink_metadata(&temp) {
                Ok(m) if m.dev() == ours.dev() && m.ino() == ours.ino() => return Ok((file, temp)),
                _ => continue,
            }
        }
    }

    /// Stores `bytes` and returns their digest.
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<String, BlobError> {
        let digest = sha256_digest(bytes);
        if !self.has(&digest) {
            let mut ingest = self.begin(&digest, Some(bytes.len() as u64))?;
            let temp = ingest.temp.clone();
            ingest.write_all(bytes).map_err(io_err("write", &temp))?;
            ingest.commit()?;
        }
        Ok(digest)
    }

    /// Moves the file at `path` into the store under its computed digest and returns the digest
    /// and size. The file is consumed: it is renamed in when on the same file system and copied
    /// (then removed) otherwise, so the caller must not reuse the path's content afterwards.
    pub fn put_file_computed(&self, path: &Path) -> Result<(String, u64), BlobError> {
        // A symlink would be linked as itself while we hash its target: refuse it.
        let meta = fs::symlink_metadata(path).map_err(io_err("stat", path))?;
        if !meta.is_file() {
            return Err(io_err("ingest", path)(io::Error::other(
                "not a regular file",
            )));
        }
        let src = File::open(path).map_err(io_err("open", path))?;
        // Lock before the file appears under ingest/, so a concurrent sweep never takes it.
        src.lock().map_err(io_err("lock", path))?;
        let temp = self.ingest.join(unique_name());
        match fs::hard_link(path, &temp) {
            Ok(()) => {
                fs::remove_file(path).map_err(io_err("remove", path))?;
                let mut ingest = Ingest {
                    store: self.clone(),
                    file: None,
                    temp,
                    hasher: Sha256::new(),
                    written: 0,
                    expected: None,
                    expected_size: None,
                };
                let mut reader = &src;
                let mut buf = vec![0u8; 256 * 1024];
                loop {
                    let n = reader
                        .read(&mut buf)
                        .map_err(io_err("read", &ingest.temp))?;
                    if n == 0 {
                        break;
                    }
                    ingest.hasher.update(&buf[..n]);
                    ingest.written += n as u64;
                }
                src.sync_all().map_err(io_err("fsync", &ingest.temp))?;
                let c = ingest.finish()?;
                Ok((c.digest, c.size))
            }
            Err(e) if e.raw_os_error() == Some(libc_exdev()) => {
                let mut ingest = self.begin_computed()?;
                let mut reader = &src;
                io::copy(&mut reader, &mut ingest).map_err(io_err("copy", path))?;
                let c = ingest.commit_computed()?;
                fs::remove_file(path).map_err(io_err("remove", path))?;
                Ok((c.digest, c.size))
            }
            Err(e) => Err(io_err("link", &temp)(e)),
        }
    }

    /// Removes temp files left by writers that died (their lock is gone). Temp files of live
    /// writers, in this process or another one sharing the store, are left alone.
    /// Returns how many were removed.
    pub fn sweep_ingest(&self) -> Result<usize, BlobError> {
        let mut removed = 0;
        let entries = fs::read_dir(&self.ingest).map_err(io_err("read dir", &self.ingest))?;
        for entry in entries {
            let entry = entry.map_err(io_err("read dir", &self.ingest))?;
            let path = entry.path();
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let Ok(file) = OpenOptions::new().read(true).open(&path) else {
                continue;
            };
            if file.try_lock().is_ok() {
                match fs::remove_file(&path) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove", &path)(e)),
                }
            }
        }
        Ok(removed)
    }
}

fn libc_exdev() -> i32 {
    18 // EXDEV on Linux; avoids a libc dependency for one constant
}

/// A name no other writer uses: pid, a per-process counter and the time, and `create_new` on
/// top in case pids collide across PID namespaces sharing a store.
fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{}-{n}-{nanos:08x}.tmp", std::process::id())
}

/// An in-progress write into the store. Writing hashes as it goes; [`Ingest::commit`] verifies
/// and publishes the blob. Dropping it uncommitted deletes the temp file.
#[derive(Debug)]
pub struct Ingest {
    store: BlobStore,
    /// `None` once finished, or when the temp file was linked in rather than written.
    file: Option<BufWriter<File>>,
    temp: PathBuf,
    hasher: Sha256,
    written: u64,
    expected: Option<String>,
    expected_size: Option<u64>,
}

impl Write for Ingest {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Refuse bytes past the expected size early, so a hostile source cannot fill the disk.
        if let Some(max) = self.expected_size
            && self.written + buf.len() as u64 > max
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "more than the expected {max} bytes for {}",
                    self.expected.as_deref().unwrap_or("blob")
                ),
            ));
        }
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("ingest already finished"))?;
        let n = file.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.as_mut().map_or(Ok(()), |f| f.flush())
    }
}

impl Ingest {
    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies size and digest against what [`BlobStore::begin`] was told, then publishes the
    /// blob. On a mismatch the temp file is deleted and nothing is stored.
    pub fn commit(self) -> Result<PathBuf, BlobError> {
        Ok(self.commit_computed()?.path)
    }

    /// Like [`Ingest::commit`], also returning the digest and size (the point of
    /// [`BlobStore::begin_computed`]).
    pub fn commit_computed(mut self) -> Result<Committed, BlobError> {
        if let Some(w) = self.file.take() {
            let file = w
                .into_inner()
                .map_err(|e| io_err("write", &self.temp)(e.into_error()))?;
            file.sync_all().map_err(io_err("fsync", &self.temp))?;
        }
        self.finish()
    }

    /// Verifies and renames; the temp file's data is already on disk. `self` drops at the end,
    /// which removes the temp file if it is still there (mismatch or error).
    fn finish(mut self) -> Result<Committed, BlobError> {
        let hasher = std::mem::replace(&mut self.hasher, Sha256::new());
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        let label = self.expected.clone().unwrap_or_else(|| actual.clone());
        if let Some(expected) = self.expected_size
            && expected != self.written
        {
            return Err(BlobError::SizeMismatch {
                digest: label,
                expected,
                actual: self.written,
            });
        }
        if let Some(expected) = &self.expected
            && *expected != actual
        {
            return Err(BlobError::DigestMismatch {
                expected: expected.clone(),
                actual,
            });
        }
        let dest = self.store.path(&actual)?;
        failpoint("blob-before-rename");
        // Concurrent ingests of one digest each rename their own verified copy; the last
        // rename wins and every reader sees a complete file either way.
        fs::rename(&self.temp, &dest).map_err(io_err("rename", &dest))?;
        failpoint("blob-after-rename");
        File::open(&self.store.blobs)
            .and_then(|d| d.sync_all())
            .map_err(io_err("fsync", &self.store.blobs))?;
        Ok(Committed {
            digest: actual,
            size: self.written,
            path: dest,
        })
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        // Close before removing; after a successful rename the name is gone and this is a no-op.
        drop(self.file.take());
        let _ = fs::remove_file(&self.temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, BlobStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        (dir, store)
    }

    fn ingest_files(store: &BlobStore) -> Vec<PathBuf> {
        fs::read_dir(&store.ingest)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    #[test]
    fn sources_are_bounded_newest_first_and_ignore_junk() {
        let (_d, store) = store();
        let d = sha256_digest(b"x");
        assert!(store.sources(&d).is_empty());
        store.record_source(&d, "r/a").unwrap();
        store.record_source(&d, "r/b").unwrap();
        store.record_source(&d, "r/a").unwrap();
        assert_eq!(store.sources(&d), ["r/a", "r/b"]);
        store.record_source(&d, "bad\nline").unwrap();
        for i in 0..20 {
            store.record_source(&d, &format!("r/{i}")).unwrap();
        }
        assert_eq!(store.sources(&d).len(), MAX_SOURCES);
        assert_eq!(store.sources(&d)[0], "r/19");
        assert!(store.record_source("sha256:nothex", "r/a").is_err());
    }

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn verified_ingest_stores_blob_under_its_digest() {
        let (_d, store) = store();
        assert!(!store.has(HELLO));
        let mut ing = store.begin(HELLO, Some(5)).unwrap();
        ing.write_all(b"hel").unwrap();
        ing.write_all(b"lo").unwrap();
        let path = ing.commit().unwrap();
        assert_eq!(path, store.path(HELLO).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"hello");
        assert!(store.has(HELLO));
        assert_eq!(store.size(HELLO).unwrap(), 5);
        assert_eq!(store.read_to_vec(HELLO, 5).unwrap(), b"hello");
        assert!(matches!(
            store.read_to_vec(HELLO, 4),
            Err(BlobError::TooLarge { size: 5, .. })
        ));
        assert!(ingest_files(&store).is_empty());
    }

    #[test]
    fn wrong_digest_is_rejected_and_nothing_stored() {
        let (_d, store) = store();
        let wrong = format!("sha256:{}", "0".repeat(64));
        let mut ing = store.begin(&wrong, None).unwrap();
        ing.write_all(b"hello").unwrap();
        match ing.commit() {
            Err(BlobError::DigestMismatch { expected, actual }) => {
                assert_eq!(expected, wrong);
                assert_eq!(actual, HELLO);
            }
            other => panic!("expected a digest mismatch, got {other:?}"),
        }
        assert!(!store.has(&wrong));
        assert!(!store.has(HELLO));
        assert!(ingest_files(&store).is_empty());
    }

    #[test]
    fn wrong_size_is_rejected() {
        let (_d, store) = store();
        let mut short = store.begin(HELLO, Some(6)).unwrap();
        short.write_all(b"hello").unwrap();
        assert!(matches!(
            short.commit(),
            Err(BlobError::SizeMismatch {
                expected: 6,
                actual: 5,
                ..
            })
        ));
        let mut long = store.begin(HELLO, Some(4)).unwrap();
        assert!(
            long.write_all(b"hello").is_err(),
            "bytes past the expected size are refused"
        );
        drop(long);
        assert!(!store.has(HELLO));
        assert!(ingest_files(&store).is_empty());
    }

    #[test]
    fn concurrent_ingest_of_same_digest_both_succeed() {
        let (_d, store) = store();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let digest = sha256_digest(&data);
        let barrier = std::sync::Barrier::new(2);
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut ing = store.begin(&digest, Some(data.len() as u64)).unwrap();
                        barrier.wait();
                        for chunk in data.chunks(4096) {
                            ing.write_all(chunk).unwrap();
                        }
                        ing.commit()
                    })
                })
                .collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        assert_eq!(fs::read(store.path(&digest).unwrap()).unwrap(), data);
        assert!(ingest_files(&store).is_empty());
    }

    #[test]
    fn dropping_uncommitted_ingest_removes_temp_file() {
        let (_d, store) = store();
        let mut ing = store.begin(HELLO, None).unwrap();
        ing.write_all(b"hel").unwrap();
        assert_eq!(ingest_files(&store).len(), 1);
        drop(ing);
        assert!(ingest_files(&store).is_empty());
        assert!(!store.has(HELLO));
    }

    #[test]
    fn bad_digest_strings_are_rejected() {
        let (_d, store) = store();
        let bad = [
            "",
            "sha256:",
            "sha256:../../etc/passwd",
            &format!("sha256:{}", "A".repeat(64)),
            &format!("sha256:{}", "a".repeat(63)),
            &format!("sha256:{}", "a".repeat(65)),
            &format!("sha512:{}", "a".repeat(64)),
            &format!("sha256:{}/", "a".repeat(63)),
            &format!("SHA256:{}", "a".repeat(64)),
            &format!(" sha256:{}", "a".repeat(64)),
        ];
        for d in bad {
            assert!(
                matches!(store.path(d), Err(BlobError::InvalidDigest { .. })),
                "{d:?}"
            );
            assert!(!store.has(d));
            assert!(
                matches!(store.begin(d, None), Err(BlobError::InvalidDigest { .. })),
                "{d:?}"
            );
            assert!(
                matches!(store.size(d), Err(BlobError::InvalidDigest { .. })),
                "{d:?}"
            );
        }
        assert!(store.path(HELLO).is_ok());
    }

    #[test]
    fn put_bytes_and_put_file_computed() {
        let (dir, store) = store();
        assert_eq!(store.put_bytes(b"hello").unwrap(), HELLO);
        assert_eq!(store.put_bytes(b"hello").unwrap(), HELLO, "idempotent");
        let src = dir.path().join("layer.tar.gz");
        fs::write(&src, b"layer bytes").unwrap();
        let (digest, size) = store.put_file_computed(&src).unwrap();
        assert_eq!(digest, sha256_digest(b"layer bytes"));
        assert_eq!(size, 11);
        assert_eq!(
            fs::read(store.path(&digest).unwrap()).unwrap(),
            b"layer bytes"
        );
        assert!(!src.exists(), "the source is moved in");
        assert!(ingest_files(&store).is_empty());
    }

    #[test]
    fn begin_computed_reports_digest() {
        let (_d, store) = store();
        let mut ing = store.begin_computed().unwrap();
        ing.write_all(b"hello").unwrap();
        let c = ing.commit_computed().unwrap();
        assert_eq!((c.digest.as_str(), c.size), (HELLO, 5));
        assert!(store.has(HELLO));
    }

    /// Child half of the crash test: does nothing unless the parent set the root variable.
    #[test]
    fn failpoint_child() {
        if let Some(root) = std::env::var_os("KILN_TEST_CRASH_ROOT") {
            let store = BlobStore::open(Path::new(&root)).unwrap();
            store.put_bytes(b"hello").unwrap();
        }
    }

    #[test]
    fn crash_at_failpoints_leaves_a_store_that_opens() {
        for (point, stored) in [("blob-before-rename", false), ("blob-after-rename", true)] {
            let dir = tempfile::tempdir().unwrap();
            let status = std::process::Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "blobs::tests::failpoint_child",
                    "--test-threads=1",
                ])
                .env("KILN_TEST_CRASH_ROOT", dir.path())
                .env(FAILPOINT_ENV, point)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .unwrap();
            assert!(!status.success(), "{point}: the child should have aborted");
            let store = BlobStore::open(dir.path()).unwrap();
            assert_eq!(store.has(HELLO), stored, "{point}");
            let left = usize::from(!stored);
            assert_eq!(
                store.sweep_ingest().unwrap(),
                left,
                "{point}: abandoned temp swept"
            );
            assert!(ingest_files(&store).is_empty());
            if stored {
                assert_eq!(store.read_to_vec(HELLO, 5).unwrap(), b"hello");
            }
        }
    }

    #[test]
    fn sweep_removes_abandoned_temps_but_not_live_ones() {
        let (_d, store) = store();
        fs::write(store.ingest.join("dead-1-0.tmp"), b"partial").unwrap();
        let mut live = store.begin(HELLO, Some(5)).unwrap();
        live.write_all(b"hel").unwrap();
        assert_eq!(store.sweep_ingest().unwrap(), 1);
        assert_eq!(
            ingest_files(&store).len(),
            1,
            "the live ingest keeps its temp file"
        );
        live.write_all(b"lo").unwrap();
        live.commit().unwrap();
        assert!(store.has(HELLO));
    }
}
