//! The manifest of a context transfer: what was sent, entry by entry, as the client's lstat saw
//! it. The next transfer of the same directory compares the client against it to reuse the
//! previous copy whole (nothing changed) or file by file (hard links to unchanged files).
//!
//! Entries are in the order the walk sends them: depth first, names sorted by bytes, a directory
//! before its contents. That is the lexicographic order of paths split at `/` ([`walk_order`]),
//! so a manifest can be read alongside a new walk without being held in memory.
//!
//! The file is binary: the magic `KILNCTX1`, then per entry a kind byte (`d`, `f`, `l`) and its
//! fields (little-endian integers, byte strings as a u32 length and the bytes), then a zero kind
//! byte and the number of entries. Its sha256 is returned by [`ManifestWriter::finish`]; the
//! store records it, and [`manifest_valid`] checks a file against it before it is trusted.

use std::cmp::Ordering;
use std::fs::{self, File, Metadata};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use sha2::{Digest, Sha256};

const MAGIC: &[u8; 8] = b"KILNCTX1";

/// How a file shares its inode with other files the walk sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Link {
    /// The client file has one link.
    None,
    /// The first file sent of an inode with several links.
    First,
    /// A later file of that inode: a hard link to the first, named here.
    Of(Vec<u8>),
}

/// One sent entry as the client's lstat saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// The path relative to the context root, raw bytes, `/`-separated.
    pub rel: Vec<u8>,
    /// `b'd'`, `b'f'` or `b'l'`.
    pub kind: u8,
    /// `st_mode` in full.
    pub mode: u32,
    /// Files: `st_size`; 0 otherwise (a directory's size says nothing about what is sent).
    pub size: u64,
    pub mtime: (i64, u32),
    /// Symlinks: the target.
    pub target: Vec<u8>,
    pub link: Link,
    /// The extended attributes that travel, in the order the client lists them.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Entry {
    pub fn new(rel: &[u8], meta: &Metadata, target: Vec<u8>, link: Link, xattrs: Xattrs) -> Self {
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            b'd'
        } else if ft.is_symlink() {
            b'l'
        } else {
            b'f'
        };
        Entry {
            rel: rel.to_vec(),
            kind,
            mode: meta.mode(),
            size: if kind == b'f' { meta.size() } else { 0 },
            mtime: (meta.mtime(), meta.mtime_nsec() as u32),
            target,
            link,
            xattrs,
        }
    }

    /// Whether the file this entry describes may be taken from a previous transfer that sent
    /// `old` at the same path: same type, mode, size, mtime and xattrs, and the same place in
    /// a group of hard links (a later member is always linked to its first, never reused).
    ///
    /// The accepted limit (as in BuildKit's fsutil): a file whose content changed while its
    /// size and mtime (in nanoseconds) stayed the same is taken as unchanged. Since Linux 6.13
    /// a write after a stat always moves the mtime on (multigrain timestamps); tools that set
    /// mtimes back (`touch -d`, `cp -p` of a same-sized file) can still hide a change.
    pub fn reusable_from(&self, old: &Entry) -> bool {
        self.kind == b'f'
            && matches!(self.link, Link::None | Link::First)
            && self.link == old.link
            && self.same_stat(old)
    }

    fn same_stat(&self, old: &Entry) -> bool {
        self.rel == old.rel
            && self.kind == old.kind
            && self.mode == old.mode
            && self.size == old.size
            && self.mtime == old.mtime
            && self.xattrs == old.xattrs
    }
}

/// Extended attributes as (name, value).
pub(crate) type Xattrs = Vec<(Vec<u8>, Vec<u8>)>;

/// The order entries are sent in: paths compared component by component.
pub(crate) fn walk_order(a: &[u8], b: &[u8]) -> Ordering {
    a.split(|&c| c == b'/').cmp(b.split(|&c| c == b'/'))
}

/// Writes a manifest as entries are sent.
pub(crate) struct ManifestWriter {
    out: BufWriter<File>,
    hash: Sha256,
    count: u64,
    buf: Vec<u8>,
}

impl ManifestWriter {
    pub fn create(path: &Path) -> io::Result<Self> {
        let mut w = ManifestWriter {
            out: BufWriter::with_capacity(256 * 1024, File::create(path)?),
            hash: Sha256::new(),
            count: 0,
            buf: Vec::with_capacity(256),
        };
        w.buf.extend_from_slice(MAGIC);
        w.flush_buf()?;
        Ok(w)
    }

    fn flush_buf(&mut self) -> io::Result<()> {
        self.hash.update(&self.buf);
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }

    pub fn push(&mut self, e: &Entry) -> io::Result<()> {
        let b = &mut self.buf;
        b.push(e.kind);
        b.extend_from_slice(&e.mode.to_le_bytes());
        b.extend_from_slice(&e.size.to_le_bytes());
        b.extend_from_slice(&e.mtime.0.to_le_bytes());
        b.extend_from_slice(&e.mtime.1.to_le_bytes());
        put_bytes(b, &e.rel);
        put_bytes(b, &e.target);
        match &e.link {
            Link::None => b.push(0),
            Link::First => b.push(1),
            Link::Of(first) => {
                b.push(2);
                put_bytes(b, first);
            }
        }
        b.extend_from_slice(&(e.xattrs.len() as u32).to_le_bytes());
        for (k, v) in &e.xattrs {
            put_bytes(b, k);
            put_bytes(b, v);
        }
        self.count += 1;
        self.flush_buf()
    }

    /// Ends the manifest and returns its digest (hex sha256 of the file).
    pub fn finish(mut self) -> io::Result<String> {
        self.buf.push(0);
        self.buf.extend_from_slice(&self.count.to_le_bytes());
        self.flush_buf()?;
        self.out.flush()?;
        Ok(hex::encode(self.hash.finalize()))
    }
}

fn put_bytes(b: &mut Vec<u8>, v: &[u8]) {
    b.extend_from_slice(&(v.len() as u32).to_le_bytes());
    b.extend_from_slice(v);
}

/// Reads a manifest entry by entry. Any malformation is an `InvalidData` error.
pub(crate) struct ManifestReader {
    input: BufReader<File>,
    hash: Sha256,
    count: u64,
    done: bool,
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("malformed context manifest: {what}"),
    )
}

impl ManifestReader {
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut r = ManifestReader {
            input: BufReader::with_capacity(256 * 1024, File::open(path)?),
            hash: Sha256::new(),
            count: 0,
            done: false,
        };
        let mut magic = [0u8; 8];
        r.read_exact(&mut magic)?;
        if &magic != MAGIC {
            return Err(bad("not a manifest"));
        }
        Ok(r)
    }

    fn read_exact(&mut self, buf: &mut [u8]) -> io::Result<()> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                bad("truncated")
            } else {
                e
            }
        })?;
        self.hash.update(&*buf);
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> io::Result<[u8; N]> {
        let mut b = [0u8; N];
        self.read_exact(&mut b)?;
        Ok(b)
    }

    fn bytes(&mut self) -> io::Result<Vec<u8>> {
        let n = u32::from_le_bytes(self.array()?) as usize;
        if n > 1 << 24 {
            return Err(bad("oversized string"));
        }
        let mut v = vec![0u8; n];
        self.read_exact(&mut v)?;
        Ok(v)
    }

    /// The next entry; None at the (well-formed) end.
    pub fn next_entry(&mut self) -> io::Result<Option<Entry>> {
        if self.done {
            return Ok(None);
        }
        let [kind] = self.array()?;
        if kind == 0 {
            let count = u64::from_le_bytes(self.array()?);
            if count != self.count {
                return Err(bad("entry count"));
            }
            let mut rest = [0u8; 1];
            if self.input.read(&mut rest)? != 0 {
                return Err(bad("data after the end"));
            }
            self.done = true;
            return Ok(None);
        }
        if !matches!(kind, b'd' | b'f' | b'l') {
            return Err(bad("entry kind"));
        }
        let mode = u32::from_le_bytes(self.array()?);
        let size = u64::from_le_bytes(self.array()?);
        let sec = i64::from_le_bytes(self.array()?);
        let nsec = u32::from_le_bytes(self.array()?);
        let rel = self.bytes()?;
        let target = self.bytes()?;
        let link = match self.array::<1>()? {
            [0] => Link::None,
            [1] => Link::First,
            [2] => Link::Of(self.bytes()?),
            _ => return Err(bad("link kind")),
        };
        let n = u32::from_le_bytes(self.array()?);
        let mut xattrs = Vec::new();
        for _ in 0..n {
            let k = self.bytes()?;
            let v = self.bytes()?;
            xattrs.push((k, v));
        }
        self.count += 1;
        Ok(Some(Entry {
            rel,
            kind,
            mode,
            size,
            mtime: (sec, nsec),
            target,
            link,
            xattrs,
        }))
    }

    /// Hex sha256 of what was read so far (the whole file once `next_entry` returned None).
    pub fn digest(&self) -> String {
        hex::encode(self.hash.clone().finalize())
    }
}

/// True when `path` is a complete, well-formed manifest whose sha256 is `digest` (hex).
pub fn manifest_valid(path: &Path, digest: &str) -> bool {
    let check = || -> io::Result<bool> {
        let mut r = ManifestReader::open(path)?;
        while r.next_entry()?.is_some() {}
        Ok(r.digest() == digest)
    };
    check().unwrap_or(false)
}

/// Reads the previous manifest alongside a new walk: [`Cursor::find`] is called with paths in
/// walk order and returns the previous entry at that path, if any. A read error ends the
/// previous manifest early (nothing more is reused), it never fails the transfer.
pub(crate) struct Cursor {
    reader: Option<ManifestReader>,
    current: Option<Entry>,
}

impl Cursor {
    pub fn open(path: &Path) -> io::Result<Self> {
        let mut c = Cursor {
            reader: Some(ManifestReader::open(path)?),
            current: None,
        };
        c.advance();
        Ok(c)
    }

    fn advance(&mut self) {
        self.current = match self.reader.as_mut().map(|r| r.next_entry()) {
            Some(Ok(Some(e))) => Some(e),
            _ => {
                self.reader = None;
                None
            }
        };
    }

    pub fn find(&mut self, rel: &[u8]) -> Option<&Entry> {
        while let Some(cur) = &self.current {
            match walk_order(&cur.rel, rel) {
                Ordering::Less => self.advance(),
                Ordering::Equal => return self.current.as_ref(),
                Ordering::Greater => return None,
            }
        }
        None
    }
}

/// The extended attributes of `p` (never through a symlink) that travel with it: all but
/// macOS metadata, which fsutil drops.
pub(crate) fn read_xattrs(p: &Path) -> Xattrs {
    let Ok(names) = xattr::list(p) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in names {
        if name.as_bytes().starts_with(b"com.apple.") {
            continue;
        }
        if let Ok(Some(v)) = xattr::get(p, &name) {
            out.push((name.as_bytes().to_vec(), v));
        }
    }
    out
}

/// Sets extended attributes; like BuildKit, failures are not fatal.
pub(crate) fn write_xattrs(p: &Path, xattrs: &Xattrs) {
    for (k, v) in xattrs {
        let _ = xattr::set(p, std::ffi::OsStr::from_bytes(k), v);
    }
}

/// The target of a symlink as bytes.
pub(crate) fn link_target(p: &Path) -> io::Result<Vec<u8>> {
    Ok(fs::read_link(p)?.into_os_string().as_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_order_is_by_component() {
        // The walk sends `a` and everything in it before `a-b` ('/' sorts after '-').
        let mut v: Vec<&[u8]> = vec![b"a-b", b"a/z", b"a", b"b", b"a/b/c", b"a/b"];
        v.sort_by(|x, y| walk_order(x, y));
        assert_eq!(v, [&b"a"[..], b"a/b", b"a/b/c", b"a/z", b"a-b", b"b"]);
    }

    #[test]
    fn entries_round_trip_and_damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m");
        let entries = vec![
            Entry {
                rel: b"a".to_vec(),
                kind: b'd',
                mode: 0o40755,
                size: 0,
                mtime: (-5, 999_999_999),
                target: Vec::new(),
                link: Link::None,
                xattrs: vec![(b"user.k".to_vec(), b"\0v".to_vec())],
            },
            Entry {
                rel: b"a/\xff".to_vec(),
                kind: b'f',
                mode: 0o104755,
                size: 1 << 40,
                mtime: (1_700_000_000, 1),
                target: Vec::new(),
                link: Link::First,
                xattrs: Vec::new(),
            },
            Entry {
                rel: b"b".to_vec(),
                kind: b'f',
                mode: 0o100644,
                size: 3,
                mtime: (0, 0),
                target: Vec::new(),
                link: Link::Of(b"a/\xff".to_vec()),
                xattrs: Vec::new(),
            },
            Entry {
                rel: b"c".to_vec(),
                kind: b'l',
                mode: 0o120777,
                size: 0,
                mtime: (1, 2),
                target: b"../x".to_vec(),
                link: Link::None,
                xattrs: Vec::new(),
            },
        ];
        let mut w = ManifestWriter::create(&path).unwrap();
        for e in &entries {
            w.push(e).unwrap();
        }
        let digest = w.finish().unwrap();
        assert!(manifest_valid(&path, &digest));
        let mut r = ManifestReader::open(&path).unwrap();
        let mut read = Vec::new();
        while let Some(e) = r.next_entry().unwrap() {
            read.push(e);
        }
        assert_eq!(read, entries);
        assert_eq!(r.digest(), digest);
        let mut c = Cursor::open(&path).unwrap();
        assert!(c.find(b"0").is_none());
        assert_eq!(c.find(b"a/\xff").map(|e| e.size), Some(1 << 40));
        assert!(c.find(b"a/\xff\x01").is_none());
        assert_eq!(
            c.find(b"c").map(|e| e.target.clone()),
            Some(b"../x".to_vec())
        );
        assert!(c.find(b"d").is_none());
        let bytes = fs::read(&path).unwrap();
        for cut in [bytes.len() - 1, bytes.len() / 2, 8, 3] {
            fs::write(&path, &bytes[..cut]).unwrap();
            assert!(!manifest_valid(&path, &digest), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[20] ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert!(!manifest_valid(&path, &digest));
        let mut longer = bytes;
        longer.push(0);
        fs::write(&path, &longer).unwrap();
        assert!(!manifest_valid(&path, &digest));
    }
}
