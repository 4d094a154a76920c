//! Touching files inside a container's rootfs without ever leaving it: every lookup goes
//! through `openat2(RESOLVE_IN_ROOT)`, so `..` and symlinks (absolute ones too) stay inside.

use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::error::ExecError;

fn open_root(rootfs: &Path) -> Result<OwnedFd, ExecError> {
    rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ExecError::io("open rootfs", rootfs, e.into()))
}

fn open_in(root: &OwnedFd, rel: &Path, flags: OFlags) -> Result<OwnedFd, Errno> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    // openat2 rejects any flag O_PATH does not take, so NOCTTY only goes with real opens.
    let extra = if flags.contains(OFlags::PATH) {
        OFlags::CLOEXEC
    } else {
        OFlags::CLOEXEC | OFlags::NOCTTY
    };
    rustix::fs::openat2(
        root,
        rel,
        flags | extra,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
}

/// Reads a regular file at `path` (absolute, as seen from inside the rootfs), at most `limit`
/// bytes. `Ok(None)` when it is missing or not a regular file, as BuildKit treats both.
pub(crate) fn read_file(
    rootfs: &Path,
    path: &str,
    limit: u64,
) -> Result<Option<Vec<u8>>, ExecError> {
    let root = open_root(rootfs)?;
    let rel = relative(path);
    let full = rootfs.join(&rel);
    // O_NONBLOCK: a FIFO planted at /etc/passwd must not hang us before the type check.
    let fd = match open_in(&root, &rel, OFlags::RDONLY | OFlags::NONBLOCK) {
        Ok(fd) => fd,
        Err(Errno::NOENT | Errno::NOTDIR | Errno::LOOP | Errno::XDEV) => return Ok(None),
        Err(e) => return Err(ExecError::io("open", full, e.into())),
    };
    let stat = rustix::fs::fstat(&fd).map_err(|e| ExecError::io("stat", &full, e.into()))?;
    if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
        return Ok(None);
    }
    let mut data = Vec::new();
    std::fs::File::from(fd)
        .take(limit + 1)
        .read_to_end(&mut data)
        .map_err(|e| ExecError::io("read", &full, e))?;
    if data.len() as u64 > limit {
        return Err(ExecError::FileTooLarge { path: full, limit });
    }
    Ok(Some(data))
}

/// Makes sure `dir` (absolute inside the rootfs) is a directory, creating missing components
/// with mode 0755 owned by `uid:gid`, as BuildKit does for a RUN step's working directory.
pub(crate) fn ensure_dir(rootfs: &Path, dir: &str, uid: u32, gid: u32) -> Result<(), ExecError> {
    let root = open_root(rootfs)?;
    let rel = relative(dir);
    let invalid = |source: io::Error| ExecError::InvalidCwd {
        cwd: dir.to_string(),
        source,
    };
    match open_in(&root, &rel, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(_) => return Ok(()),
        Err(Errno::NOENT) => {}
        Err(e) => return Err(invalid(e.into())),
    }
    let mut prefix = PathBuf::new();
    for comp in rel.components() {
        let parent = open_in(&root, &prefix, OFlags::PATH | OFlags::DIRECTORY)
            .map_err(|e| invalid(e.into()))?;
        prefix.push(comp);
        match open_in(&root, &prefix, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(_) => continue,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(invalid(e.into())),
        }
        let name = comp.as_os_str();
        match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(invalid(e.into())),
        }
        // Chown through a fresh no-follow open: what we just made cannot be swapped for a
        // symlink that leads out of the rootfs.
        let made = rustix::fs::openat(
            &parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| invalid(e.into()))?;
        rustix::fs::fchown(
            &made,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .map_err(|e| invalid(e.into()))?;
        // mkdir applied the umask; the mode BuildKit sets is exactly 0755.
        rustix::fs::fchmod(&made, Mode::from_raw_mode(0o755)).map_err(|e| invalid(e.into()))?;
    }
    Ok(())
}

/// `/a/../b` -> `b`: lexically cleaned and relative, never escaping (the kernel enforces it too).
fn relative(path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for comp in Path::new(path).components() {
        match comp {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn symlinks_cannot_leave_the_rootfs() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(tmp.path().join("secret"), "host secret").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), rootfs.join("etc/abs")).unwrap();
        std::os::unix::fs::symlink("../../secret", rootfs.join("etc/rel")).unwrap();
        assert_eq!(read_file(&rootfs, "/etc/abs", 100).unwrap(), None);
        assert_eq!(read_file(&rootfs, "/etc/rel", 100).unwrap(), None);
        assert_eq!(read_file(&rootfs, "/../secret", 100).unwrap(), None);
        // A symlink that stays inside is followed, relative to the rootfs.
        std::fs::write(rootfs.join("etc/real"), "inside").unwrap();
        std::os::unix::fs::symlink("/etc/real", rootfs.join("etc/link")).unwrap();
        assert_eq!(
            read_file(&rootfs, "/etc/link", 100).unwrap().as_deref(),
            Some(b"inside".as_slice())
        );
        assert!(matches!(
            read_file(&rootfs, "/etc/real", 3),
            Err(ExecError::FileTooLarge { .. })
        ));
        // Directories are not user files.
        assert_eq!(read_file(&rootfs, "/etc", 100).unwrap(), None);
    }

    #[test]
    fn ensure_dir_creates_owned_components_inside() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("srv")).unwrap();
        std::os::unix::fs::symlink(tmp.path(), rootfs.join("escape")).unwrap();
        let (uid, gid) = if rustix::process::geteuid().is_root() {
            (1000, 1000)
        } else {
            (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            )
        };
        ensure_dir(&rootfs, "/srv/a/b", uid, gid).unwrap();
        let md = std::fs::metadata(rootfs.join("srv/a/b")).unwrap();
        assert_eq!((md.uid(), md.gid()), (uid, gid));
        assert_eq!(md.permissions().mode() & 0o7777, 0o755);
        // /srv existed: left as it was.
        assert_eq!(
            std::fs::metadata(rootfs.join("srv")).unwrap().uid(),
            rustix::process::geteuid().as_raw()
        );
        // A symlink is resolved inside the rootfs, never on the host: this one dangles there.
        assert!(ensure_dir(&rootfs, "/escape/made", uid, gid).is_err());
        assert!(!tmp.path().join("made").exists());
        // A symlink to a directory inside the rootfs is followed.
        std::os::unix::fs::symlink("/srv", rootfs.join("alias")).unwrap();
        ensure_dir(&rootfs, "/alias/c", uid, gid).unwrap();
        assert!(rootfs.join("srv/c").is_dir());
    }
}
