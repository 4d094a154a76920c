//! Tree building, tar building and tree comparison helpers.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Skips a test body when not root.
#[macro_export]
macro_rules! require_root {
    () => {
        if !$crate::util::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

pub fn p(root: &Path, rel: &[u8]) -> std::path::PathBuf {
    root.join(OsStr::from_bytes(rel))
}

pub fn file(root: &Path, rel: &[u8], data: &[u8], mode: u32) {
    let path = p(root, rel);
    std::fs::write(&path, data).unwrap();
    chmod(&path, mode);
}

pub fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

pub fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

pub fn mknod(path: &Path, kind: rustix::fs::FileType, mode: u32, major: u32, minor: u32) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        kind,
        rustix::fs::Mode::from_raw_mode(mode),
        rustix::fs::makedev(major, minor),
    )
    .unwrap();
    chmod(path, mode);
}

/// Sets mtime (and atime) without following symlinks.
pub fn mtime(path: &Path, secs: i64) {
    let t = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    let ts = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &ts,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// Everything we promise to keep about one path.
#[derive(Debug, PartialEq, Eq)]
pub struct Meta {
    pub kind: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: Option<i64>,
    pub rdev: u64,
    pub content: Vec<u8>,
    pub link: Vec<u8>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The first path (in walk order) sharing this inode, for hard links.
    pub inode_group: Vec<u8>,
}

/// Snapshot of a tree, keyed by relative path bytes. Symlink mtimes are left out when
/// `symlink_mtimes` is false.
pub fn snapshot(root: &Path, symlink_mtimes: bool) -> BTreeMap<Vec<u8>, Meta> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<u8>> = BTreeMap::new();
    for ent in walkdir::WalkDir::new(root).min_depth(1).sort_by_file_name() {
        let ent = ent.unwrap();
        let rel = ent
            .path()
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let md = ent.path().symlink_metadata().unwrap();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "socket"
        };
        let mut xattrs = BTreeMap::new();
        for k in xattr::list(ent.path()).unwrap() {
            if let Some(v) = xattr::get(ent.path(), &k).unwrap() {
                xattrs.insert(k.as_bytes().to_vec(), v);
            }
        }
        let group = if ft.is_dir() {
            rel.clone()
        } else {
            inodes
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        };
        out.insert(
            rel,
            Meta {
                kind: kind.into(),
                mode: md.mode() & 0o7777,
                uid: md.uid(),
                gid: md.gid(),
                mtime: (symlink_mtimes || !ft.is_symlink()).then_some(md.mtime()),
                rdev: md.rdev(),
                content: if ft.is_file() {
                    std::fs::read(ent.path()).unwrap()
                } else {
                    Vec::new()
                },
                link: if ft.is_symlink() {
                    std::fs::read_link(ent.path())
                        .unwrap()
                        .as_os_str()
                        .as_bytes()
                        .to_vec()
                } else {
                    Vec::new()
                },
                xattrs,
                inode_group: group,
            },
        );
    }
    out
}

/// A tar built entry by entry with raw names, so tests can write what a hostile layer would.
pub struct RawTar {
    pub buf: Vec<u8>,
}

pub enum E<'a> {
    File(&'a [u8], &'a [u8]),
    Dir(&'a [u8], u32),
    Symlink(&'a [u8], &'a [u8]),
    Link(&'a [u8], &'a [u8]),
}

impl RawTar {
    pub fn new() -> Self {
        RawTar { buf: Vec::new() }
    }

    pub fn add(&mut self, e: E<'_>) -> &mut Self {
        let mut h = tar::Header::new_ustar();
        let (name, link, kind, data, mode): (&[u8], &[u8], tar::EntryType, &[u8], u32) = match e {
            E::File(n, d) => (n, b"", tar::EntryType::Regular, d, 0o644),
            E::Dir(n, m) => (n, b"", tar::EntryType::Directory, b"", m),
            E::Symlink(n, t) => (n, t, tar::EntryType::Symlink, b"", 0o777),
            E::Link(n, t) => (n, t, tar::EntryType::Link, b"", 0o644),
        };
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name);
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.buf.extend_from_slice(h.as_bytes());
        self.buf.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.buf.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut b = self.buf.clone();
        b.extend_from_slice(&[0u8; 1024]);
        b
    }
}

/// Entry names of a tar, in order.
pub fn tar_names(tar: &[u8]) -> Vec<Vec<u8>> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| e.unwrap().path_bytes().into_owned())
        .collect()
}
