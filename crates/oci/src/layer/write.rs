//! Upper dir (or plain directory) -> OCI layer tar, in the shape containerd writes: entries in
//! lexical order per directory, directories first (`bin/`), names relative without `./`,
//! mtimes in whole seconds, no user or group names, no atime/ctime.

use super::tar_write::{TarWriter, WHead, WKind};
use super::{LayerError, OPAQUE_XATTR, OPAQUE_XATTR_USER, WHITEOUT_OPAQUE, WHITEOUT_PREFIX};
use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// What [`write_layer`] wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries (not counting PAX records).
    pub entries: u64,
    /// Whiteouts and opaque markers written.
    pub whiteouts: u64,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
}

/// Writes `upper` as an OCI layer tar to `out`. Whiteout devices become `.wh.NAME`, opaque
/// directories are followed by `.wh..wh..opq`, files sharing an inode become hard links to the
/// first name written, sockets are skipped. The same tree always gives the same bytes.
pub fn write_layer(upper: &Path, out: impl Write) -> Result<LayerStats, LayerError> {
    let mut tw = TarWriter::new(out);
    let mut stats = LayerStats::default();
    let mut inodes: HashMap<(u64, u64), Vec<u8>> = HashMap::new();
    let walk = walkdir::WalkDir::new(upper)
        .follow_links(false)
        .min_depth(1)
        .sort_by_file_name();
    for ent in walk {
        let ent = ent.map_err(|e| {
            let path = e.path().unwrap_or(upper).to_path_buf();
            LayerError::Walk {
                path,
                source: e.into(),
            }
        })?;
        let path = ent.path();
        let walk_err = |source: io::Error| LayerError::Walk {
            path: path.to_path_buf(),
            source,
        };
        let write_err = |source: io::Error| LayerError::Write {
            path: path.to_path_buf(),
            source,
        };
        let md = ent.metadata().map_err(|e| walk_err(e.into()))?;
        let rel = path
            .strip_prefix(upper)
            .unwrap_or(path)
            .as_os_str()
            .as_bytes()
            .to_vec();
        let ft = md.file_type();

        if ft.is_char_device() && md.rdev() == 0 {
            tw.header(&marker(&rel, None)).map_err(write_err)?;
            stats.entries += 1;
            stats.whiteouts += 1;
            continue;
        }
        if ft.is_socket() {
            continue;
        }

        let kind = if ft.is_dir() {
            WKind::Dir
        } else if ft.is_file() {
            WKind::Regular
        } else if ft.is_symlink() {
            WKind::Symlink
        } else if ft.is_char_device() {
            WKind::Char
        } else if ft.is_block_device() {
            WKind::Block
        } else {
            WKind::Fifo
        };
        let mut name = rel.clone();
        if kind == WKind::Dir {
            name.push(b'/');
        }
        let mut h = WHead::new(name, kind);
        h.mode = md.mode() & 0o7777;
        h.uid = u64::from(md.uid());
        h.gid = u64::from(md.gid());
        h.mtime = md.mtime().max(0) as u64;
        let (xattrs, opaque) = read_xattrs(path).map_err(walk_err)?;
        h.xattrs = xattrs;
        match kind {
            WKind::Symlink => {
                h.link = std::fs::read_link(path)
                    .map_err(walk_err)?
                    .as_os_str()
                    .as_bytes()
                    .to_vec()
            }
            WKind::Char | WKind::Block => {
                let dev = md.rdev();
                h.dev_major = rustix::fs::major(dev);
                h.dev_minor = rustix::fs::minor(dev);
            }
            WKind::Regular => h.size = md.len(),
            _ => {}
        }

        // Like containerd: any non-directory with several links is linked to its first name.
        if kind != WKind::Dir && md.nlink() > 1 {
            match inodes.get(&(md.dev(), md.ino())) {
                Some(first) => {
                    h.kind = WKind::HardLink;
                    h.link = first.clone();
                    h.size = 0;
                }
                None => {
                    inodes.insert((md.dev(), md.ino()), h.name.clone());
                }
            }
        }

        tw.header(&h).map_err(write_err)?;
        stats.entries += 1;
        if h.kind == WKind::Regular && h.size > 0 {
            copy_file(path, h.size, &mut tw).map_err(write_err)?;
        }
        if opaque {
            tw.header(&marker(&rel, Some(WHITEOUT_OPAQUE.as_bytes())))
                .map_err(write_err)?;
            stats.entries += 1;
            stats.whiteouts += 1;
        }
    }
    stats.tar_size = tw.written + 1024;
    tw.finish().map_err(|source| LayerError::Write {
        path: upper.to_path_buf(),
        source,
    })?;
    Ok(stats)
}

/// A whiteout entry: `.wh.NAME` for the path `rel`, or `rel/.wh..wh..opq` when `opaque_name`
/// is given. Empty regular file, mode 0, root, mtime 0 (as containerd 2 writes them).
fn marker(rel: &[u8], opaque_name: Option<&[u8]>) -> WHead {
    let name = match opaque_name {
        Some(n) => [rel, b"/", n].concat(),
        None => {
            let (dir, base) = match rel.iter().rposition(|&b| b == b'/') {
                Some(i) => (&rel[..=i], &rel[i + 1..]),
                None => (&b""[..], rel),
            };
            [dir, WHITEOUT_PREFIX.as_bytes(), base].concat()
        }
    };
    WHead::new(name, WKind::Regular)
}

type Xattrs = BTreeMap<Vec<u8>, Vec<u8>>;

/// The xattrs to carry (all but overlayfs' own), and whether the directory is opaque.
fn read_xattrs(path: &Path) -> io::Result<(Xattrs, bool)> {
    let mut out = BTreeMap::new();
    let mut opaque = false;
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSUP) => return Ok((out, false)),
        Err(e) => return Err(e),
    };
    for key in names {
        let k = key.as_bytes();
        let overlay = k.starts_with(b"trusted.overlay.") || k.starts_with(b"user.overlay.");
        let Some(value) = xattr::get(path, &key)? else {
            continue;
        };
        if overlay {
            if (key == OPAQUE_XATTR || key == OPAQUE_XATTR_USER) && value == b"y" {
                opaque = true;
            }
            continue;
        }
        out.insert(k.to_vec(), value);
    }
    Ok((out, opaque))
}

/// Copies exactly `size` bytes of `path`; a file that changed size meanwhile is an error, as
/// the header already promised the size.
fn copy_file<W: Write>(path: &Path, size: u64, tw: &mut TarWriter<W>) -> io::Result<()> {
    let mut f = std::fs::File::open(path)?.take(size);
    let mut buf = vec![0u8; 128 * 1024];
    let mut left = size;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        tw.data(&buf[..n])?;
        left -= n as u64;
    }
    if left != 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "file shrank while being read",
        ));
    }
    tw.pad(size)
}
