//! Descriptor-relative file-system helpers that never follow a symlink, so that names from an
//! untrusted tar stay inside the destination directory.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::rc::Rc;

pub(crate) fn os(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens `name` in `dir` as a directory, refusing symlinks.
pub(crate) fn open_dir_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(dir, os(name), DIR_FLAGS, Mode::empty())
}

/// Opens the directory `comps` below `root` without following any symlink and without leaving
/// `root`; `comps` must already be free of `.`, `..` and empty components.
pub(crate) fn open_beneath(root: BorrowedFd<'_>, comps: &[&[u8]]) -> Result<OwnedFd, Errno> {
    if comps.is_empty() {
        return rustix::io::dup(root);
    }
    let path = comps.join(&b'/');
    let how = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
    match rustix::fs::openat2(root, os(&path), DIR_FLAGS, Mode::empty(), how) {
        // Old kernels: walk one component at a time, each with O_NOFOLLOW.
        Err(Errno::NOSYS) => {
            let mut cur = rustix::io::dup(root)?;
            for c in comps {
                cur = open_dir_at(cur.as_fd(), c)?;
            }
            Ok(cur)
        }
        r => r,
    }
}

/// `lstat` of `name` in `dir`; `None` if it does not exist.
pub(crate) fn lstat_at(
    dir: BorrowedFd<'_>,
    name: &[u8],
) -> Result<Option<rustix::fs::Stat>, Errno> {
    match rustix::fs::statat(dir, os(name), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

pub(crate) fn file_type(st: &rustix::fs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Is this an overlayfs whiteout (a 0:0 character device)?
pub(crate) fn is_whiteout(st: &rustix::fs::Stat) -> bool {
    file_type(st) == FileType::CharacterDevice && st.st_rdev == 0
}

/// Removes `name` from `dir` whatever it is; a directory goes with all its contents. Iterative,
/// so a deep tree cannot overflow the stack, and never follows a symlink.
pub(crate) fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> Result<(), Errno> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    if file_type(&st) != FileType::Directory {
        return rustix::fs::unlinkat(dir, os(name), AtFlags::empty());
    }
    // Each frame is an open directory still to be emptied, with its parent and name.
    let mut stack: Vec<(Rc<OwnedFd>, Vec<u8>)> =
        vec![(Rc::new(rustix::io::dup(dir)?), name.to_vec())];
    while let Some((parent, name)) = stack.last() {
        let d = Rc::new(open_dir_at(parent.as_fd(), name)?);
        let mut subdirs = Vec::new();
        for ent in rustix::fs::Dir::read_from(&*d)? {
            let ent = ent?;
            let n = ent.file_name().to_bytes();
            if n == b"." || n == b".." {
                continue;
            }
            if ent.file_type() == FileType::Directory {
                subdirs.push(n.to_vec());
            } else {
                rustix::fs::unlinkat(&*d, os(n), AtFlags::empty())?;
            }
        }
        if subdirs.is_empty() {
            rustix::fs::unlinkat(&**parent, os(name), AtFlags::REMOVEDIR)?;
            stack.pop();
        } else {
            // Revisit this directory once its subdirectories are gone.
            for s in subdirs {
                stack.push((Rc::clone(&d), s));
            }
        }
    }
    Ok(())
}

/// A path through `/proc/self/fd` naming `name` inside the already-resolved `dir`; the final
/// component is used with the `l*` calls, which do not follow it.
pub(crate) fn proc_path(dir: BorrowedFd<'_>, name: &[u8]) -> std::path::PathBuf {
    use std::os::fd::AsRawFd;
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name);
    std::path::PathBuf::from(OsStr::from_bytes(&p))
}
