//! Tar -> overlayfs upper dir. Every name is resolved below the destination descriptor with
//! symlinks refused, `..` clamped at the root and absolute names taken as relative, so a
//! hostile layer cannot touch anything outside the destination.

use super::fsutil::{self, is_whiteout, lstat_at, open_beneath, open_dir_at, os, remove_at};
use super::{LayerError, OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX, lossy};
use crate::tar::{Entry as Head, Kind, Reader as TarReader};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Timespec, Timestamps, Uid, XattrFlags};
use rustix::io::Errno;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

/// What [`apply_layer`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Tar entries processed (after PAX/GNU extension records are folded in).
    pub entries: u64,
    /// Bytes of regular-file data written.
    pub bytes: u64,
    /// Whiteout devices created or folded into an entry of this layer.
    pub whiteouts: u64,
    /// Directories marked opaque.
    pub opaque_dirs: u64,
}

/// Unpacks an uncompressed OCI layer tar into the empty directory `dest`, producing an
/// overlayfs upper dir: `.wh.NAME` becomes a 0:0 character device `NAME`, `.wh..wh..opq`
/// marks its directory opaque. A whiteout hides lower layers only: if this layer also has an
/// entry at that path, the entry stays (a directory becomes opaque).
pub fn apply_layer(tar: impl Read, dest: &Path) -> Result<ApplyStats, LayerError> {
    let dest_err = |source: Errno| LayerError::Dest {
        path: dest.to_path_buf(),
        source: source.into(),
    };
    let root = rustix::fs::open(
        dest,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(dest_err)?;
    let mut dir = rustix::fs::Dir::read_from(&root).map_err(dest_err)?;
    for ent in &mut dir {
        let ent = ent.map_err(dest_err)?;
        if !matches!(ent.file_name().to_bytes(), b"." | b"..") {
            return Err(LayerError::DestNotEmpty {
                path: dest.to_path_buf(),
            });
        }
    }

    let mut a = Applier {
        root,
        stats: ApplyStats::default(),
        dir_times: Vec::new(),
    };
    let mut reader = TarReader::new(tar);
    while let Some(head) = reader.next_entry()? {
        let head = layer_kind(head)?;
        a.stats.entries += 1;
        a.entry(&head, &mut reader)?;
    }
    // Directory mtimes last: creating their children changed them.
    for (comps, mtime) in std::mem::take(&mut a.dir_times) {
        let refs: Vec<&[u8]> = comps.iter().map(Vec::as_slice).collect();
        // A later entry may have replaced the directory; then there is nothing to stamp.
        if let Ok(fd) = open_beneath(a.root.as_fd(), &refs) {
            let entry = || lossy(&comps.join(&b'/'));
            rustix::fs::futimens(&fd, &times(mtime)).map_err(|e| apply_err(entry(), e))?;
        }
    }
    Ok(a.stats)
}

struct Applier {
    root: OwnedFd,
    stats: ApplyStats,
    dir_times: Vec<(Vec<Vec<u8>>, i64)>,
}

fn apply_err(entry: String, e: impl Into<io::Error>) -> LayerError {
    LayerError::Apply {
        entry,
        source: e.into(),
    }
}

/// Splits a tar name into clean components: empty and `.` dropped, `..` clamped at the root,
/// a leading `/` ignored. The result can only name something inside the root.
fn components(name: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    out
}

fn times(mtime: i64) -> Timestamps {
    let t = Timespec {
        tv_sec: mtime,
        tv_nsec: 0,
    };
    Timestamps {
        last_access: t,
        last_modification: t,
    }
}

/// The kinds a layer may hold: a contiguous file (`'7'`) is a regular file; sparse files and
/// unknown kinds are refused.
fn layer_kind(mut h: Head) -> Result<Head, LayerError> {
    let reason = match h.kind {
        Kind::Contiguous => {
            h.kind = Kind::Regular;
            return Ok(h);
        }
        Kind::Sparse => "gnu sparse files are not supported",
        Kind::Other(_) => "unsupported entry type",
        _ => return Ok(h),
    };
    Err(LayerError::Malformed {
        entry: lossy(&h.name),
        reason,
    })
}

fn ids(h: &Head, entry: &str) -> Result<(Uid, Gid), LayerError> {
    let bad = || LayerError::Malformed {
        entry: entry.to_string(),
        reason: "uid or gid out of range",
    };
    let uid = u32::try_from(h.uid)
        .ok()
        .filter(|&u| u != u32::MAX)
        .ok_or_else(bad)?;
    let gid = u32::try_from(h.gid)
        .ok()
        .filter(|&g| g != u32::MAX)
        .ok_or_else(bad)?;
    Ok((Uid::from_raw(uid), Gid::from_raw(gid)))
}

/// Sets the xattrs of an entry. overlayfs' own attributes are dropped: a layer must not be able
/// to plant redirects or origins. Like containerd, `user.*` failures are ignored (some file
/// systems and symlinks refuse them).
fn set_xattrs(
    h: &Head,
    entry: &str,
    set: impl Fn(&[u8], &[u8]) -> Result<(), Errno>,
) -> Result<(), LayerError> {
    for (k, v) in &h.xattrs {
        if k.starts_with(b"trusted.overlay.") || k.starts_with(b"user.overlay.") {
            continue;
        }
        match set(k, v) {
            Ok(()) => {}
            Err(Errno::PERM | Errno::NOTSUP) if k.starts_with(b"user.") => {}
            Err(e) => return Err(apply_err(format!("{entry} (xattr {})", lossy(k)), e)),
        }
    }
    Ok(())
}

impl Applier {
    /// Opens (creating as needed) the directory `comps`. A missing component becomes a 0755
    /// root-owned directory; a whiteout of this layer becomes an opaque directory; a symlink or
    /// any other non-directory is refused.
    fn ensure_dir(&mut self, comps: &[&[u8]], entry: &str) -> Result<OwnedFd, LayerError> {
        if let Ok(fd) = open_beneath(self.root.as_fd(), comps) {
            return Ok(fd);
        }
        let err = |e: Errno| apply_err(entry.to_string(), e);
        let mut cur = rustix::io::dup(&self.root).map_err(err)?;
        for c in comps {
            let next = match open_dir_at(cur.as_fd(), c) {
                Ok(fd) => fd,
                Err(Errno::NOENT) => self.mkdir(cur.as_fd(), c, 0o755, false).map_err(err)?,
                Err(Errno::NOTDIR | Errno::LOOP) => {
                    let st = lstat_at(cur.as_fd(), c).map_err(err)?;
                    if !st.as_ref().is_some_and(is_whiteout) {
                        return Err(LayerError::ParentNotDir {
                            entry: entry.to_string(),
                        });
                    }
                    rustix::fs::unlinkat(&cur, os(c), AtFlags::empty()).map_err(err)?;
                    self.mkdir(cur.as_fd(), c, 0o755, true).map_err(err)?
                }
                Err(e) => return Err(err(e)),
            };
            cur = next;
        }
        Ok(cur)
    }

    fn mkdir(
        &mut self,
        parent: BorrowedFd<'_>,
        name: &[u8],
        mode: u32,
        opaque: bool,
    ) -> Result<OwnedFd, Errno> {
        rustix::fs::mkdirat(parent, os(name), Mode::from_raw_mode(0o700))?;
        let fd = open_dir_at(parent, name)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))?;
        if opaque {
            self.set_opaque(&fd)?;
        }
        Ok(fd)
    }

    fn set_opaque(&mut self, fd: &OwnedFd) -> Result<(), Errno> {
        self.stats.opaque_dirs += 1;
        rustix::fs::fsetxattr(fd, OPAQUE_XATTR, b"y", XattrFlags::empty())
    }

    fn entry<R: Read>(&mut self, h: &Head, reader: &mut TarReader<R>) -> Result<(), LayerError> {
        let entry = lossy(&h.name);
        let comps = components(&h.name);
        let Some((&base, parents)) = comps.split_last() else {
            // The root itself: only a directory entry makes sense, and only its metadata.
            if h.kind != Kind::Dir {
                return Err(LayerError::Malformed {
                    entry,
                    reason: "entry replaces the root directory",
                });
            }
            let root = rustix::io::dup(&self.root).map_err(|e| apply_err(entry.clone(), e))?;
            return self.dir_meta(&root, h, &entry, Vec::new());
        };
        let parent = self.ensure_dir(parents, &entry)?;
        let err = |e: Errno| apply_err(entry.clone(), e);

        if base.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            if base == WHITEOUT_OPAQUE.as_bytes() {
                return self.set_opaque(&parent).map_err(err);
            }
            if base.starts_with(b".wh..wh.") {
                return Ok(()); // other AUFS metadata; nothing to do in overlayfs
            }
            let name = &base[WHITEOUT_PREFIX.len()..];
            if name.is_empty() || name == b"." || name == b".." {
                return Err(LayerError::Malformed {
                    entry,
                    reason: "invalid whiteout name",
                });
            }
            return self.whiteout(&parent, name, h.mtime).map_err(err);
        }

        let existing = lstat_at(parent.as_fd(), base).map_err(err)?;
        if h.kind == Kind::Dir {
            let fd = match existing {
                Some(st) if fsutil::file_type(&st) == FileType::Directory => {
                    open_dir_at(parent.as_fd(), base).map_err(err)?
                }
                Some(_) => {
                    // Replaces a whiteout or file of this layer, which hid the lower path.
                    remove_at(parent.as_fd(), base).map_err(err)?;
                    self.mkdir(parent.as_fd(), base, 0o700, true).map_err(err)?
                }
                None => self
                    .mkdir(parent.as_fd(), base, 0o700, false)
                    .map_err(err)?,
            };
            let owned: Vec<Vec<u8>> = comps.iter().map(|c| c.to_vec()).collect();
            return self.dir_meta(&fd, h, &entry, owned);
        }

        if h.kind == Kind::HardLink {
            return self.hard_link(&parent, base, h, &entry);
        }
        if existing.is_some() {
            remove_at(parent.as_fd(), base).map_err(err)?;
        }
        let (uid, gid) = ids(h, &entry)?;
        let mode = Mode::from_raw_mode(h.mode & 0o7777);
        match h.kind {
            Kind::Regular => {
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                let fd = rustix::fs::openat(&parent, os(base), flags, Mode::from_raw_mode(0o600))
                    .map_err(err)?;
                let mut file = std::fs::File::from(fd);
                let n = io::copy(&mut reader.data(), &mut file)
                    .map_err(|e| apply_err(entry.clone(), e))?;
                debug_assert_eq!(n, h.size);
                self.stats.bytes += n;
                // chown clears setuid bits and capabilities: owner, then mode, then xattrs.
                rustix::fs::fchown(&file, Some(uid), Some(gid)).map_err(err)?;
                rustix::fs::fchmod(&file, mode).map_err(err)?;
                set_xattrs(h, &entry, |k, v| {
                    rustix::fs::fsetxattr(&file, os(k), v, XattrFlags::empty())
                })?;
                rustix::fs::futimens(&file, &times(h.mtime)).map_err(err)?;
                return Ok(());
            }
            Kind::Symlink => {
                rustix::fs::symlinkat(os(&h.link), &parent, os(base)).map_err(err)?;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let (ft, dev) = match h.kind {
                    Kind::Char => (
                        FileType::CharacterDevice,
                        rustix::fs::makedev(h.dev_major, h.dev_minor),
                    ),
                    Kind::Block => (
                        FileType::BlockDevice,
                        rustix::fs::makedev(h.dev_major, h.dev_minor),
                    ),
                    _ => (FileType::Fifo, 0),
                };
                rustix::fs::mknodat(&parent, os(base), ft, Mode::from_raw_mode(0o600), dev)
                    .map_err(err)?;
            }
            Kind::Dir | Kind::HardLink => return Ok(()), // handled above
            // `layer_kind` turned these into a regular file or an error.
            Kind::Contiguous | Kind::Sparse | Kind::Other(_) => unreachable!("{:?}", h.kind),
        }
        // Not a regular file: work by name, never following the final component.
        rustix::fs::chownat(
            &parent,
            os(base),
            Some(uid),
            Some(gid),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(err)?;
        if h.kind != Kind::Symlink {
            // The node was just created by us and is not a symlink, so following is harmless.
            rustix::fs::chmodat(&parent, os(base), mode, AtFlags::empty()).map_err(err)?;
        }
        let p = fsutil::proc_path(parent.as_fd(), base);
        set_xattrs(h, &entry, |k, v| {
            rustix::fs::lsetxattr(&p, os(k), v, XattrFlags::empty())
        })?;
        rustix::fs::utimensat(
            &parent,
            os(base),
            &times(h.mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(err)?;
        Ok(())
    }

    fn dir_meta(
        &mut self,
        fd: &OwnedFd,
        h: &Head,
        entry: &str,
        comps: Vec<Vec<u8>>,
    ) -> Result<(), LayerError> {
        let err = |e: Errno| apply_err(entry.to_string(), e);
        let (uid, gid) = ids(h, entry)?;
        rustix::fs::fchown(fd, Some(uid), Some(gid)).map_err(err)?;
        rustix::fs::fchmod(fd, Mode::from_raw_mode(h.mode & 0o7777)).map_err(err)?;
        set_xattrs(h, entry, |k, v| {
            rustix::fs::fsetxattr(fd, os(k), v, XattrFlags::empty())
        })?;
        self.dir_times.push((comps, h.mtime));
        Ok(())
    }

    /// A whiteout for `name`: a 0:0 device, unless this layer already has an entry there.
    fn whiteout(&mut self, parent: &OwnedFd, name: &[u8], mtime: i64) -> Result<(), Errno> {
        self.stats.whiteouts += 1;
        match lstat_at(parent.as_fd(), name)? {
            None => {
                rustix::fs::mknodat(
                    parent,
                    os(name),
                    FileType::CharacterDevice,
                    Mode::empty(),
                    0,
                )?;
                rustix::fs::chownat(
                    parent,
                    os(name),
                    Some(Uid::ROOT),
                    Some(Gid::ROOT),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
                // The entry's mtime, so that the same tar always gives the same upper dir.
                rustix::fs::utimensat(parent, os(name), &times(mtime), AtFlags::SYMLINK_NOFOLLOW)
            }
            // A directory of this layer: it must not show what lower layers had there.
            Some(st) if fsutil::file_type(&st) == FileType::Directory => {
                let fd = open_dir_at(parent.as_fd(), name)?;
                self.set_opaque(&fd)
            }
            // A file of this layer already hides the lower path.
            Some(_) => Ok(()),
        }
    }

    fn hard_link(
        &mut self,
        parent: &OwnedFd,
        base: &[u8],
        h: &Head,
        entry: &str,
    ) -> Result<(), LayerError> {
        let bad = || LayerError::BadLink {
            entry: entry.to_string(),
            target: lossy(&h.link),
        };
        let tcomps = components(&h.link);
        let Some((&tbase, tparents)) = tcomps.split_last() else {
            return Err(bad());
        };
        let tparent = open_beneath(self.root.as_fd(), tparents).map_err(|_| bad())?;
        let target = lstat_at(tparent.as_fd(), tbase)
            .map_err(|_| bad())?
            .ok_or_else(bad)?;
        // Directories cannot be linked; a whiteout is not a file of this layer.
        if fsutil::file_type(&target) == FileType::Directory || is_whiteout(&target) {
            return Err(bad());
        }
        let err = |e: Errno| apply_err(entry.to_string(), e);
        if let Some(st) = lstat_at(parent.as_fd(), base).map_err(err)? {
            if st.st_ino == target.st_ino && st.st_dev == target.st_dev {
                return Ok(());
            }
            remove_at(parent.as_fd(), base).map_err(err)?;
        }
        rustix::fs::linkat(&tparent, os(tbase), parent, os(base), AtFlags::empty()).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::components;

    #[test]
    fn components_are_clamped_to_the_root() {
        let c = |s: &str| {
            components(s.as_bytes())
                .iter()
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(c("../../etc/passwd"), ["etc", "passwd"]);
        assert_eq!(c("/abs/./x/"), ["abs", "x"]);
        assert_eq!(c("a/../../b"), ["b"]);
        assert!(c("./").is_empty());
        assert!(c("..").is_empty());
    }
}
