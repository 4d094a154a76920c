//! Small file-system primitives shared by the actions: ownership, modes,
//! timestamps and BuildKit's `MkdirAll`. Everything works on host paths that
//! were already resolved inside their root. BuildKit runs with umask 0, so
//! every created entry gets its mode set explicitly.

use std::fs;
use std::io;
use std::os::unix::fs::{PermissionsExt, lchown};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, CWD, Timespec, Timestamps, utimensat};

use crate::chown::Owner;

/// A fixed timestamp from an action (`timestamp` in ns since the epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Time {
    pub sec: i64,
    pub nsec: i64,
}

impl Time {
    /// `-1` means "keep the source's time" and maps to None.
    pub fn from_action(ts: i64) -> Option<Time> {
        (ts != -1).then(|| Time {
            sec: ts.div_euclid(1_000_000_000),
            nsec: ts.rem_euclid(1_000_000_000),
        })
    }

    fn spec(self) -> Timespec {
        Timespec {
            tv_sec: self.sec,
            tv_nsec: self.nsec as _,
        }
    }
}

/// Sets atime and mtime of `p` itself (never through a symlink).
pub fn set_times(p: &Path, atime: Time, mtime: Time) -> io::Result<()> {
    let ts = Timestamps {
        last_access: atime.spec(),
        last_modification: mtime.spec(),
    };
    utimensat(CWD, p, &ts, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

/// Applies an action's fixed timestamp, if any.
pub fn utimes(p: &Path, tm: Option<Time>) -> io::Result<()> {
    match tm {
        Some(t) => set_times(p, t, t),
        None => Ok(()),
    }
}

/// Changes the owner of `p` itself when an owner is given.
pub fn chown(p: &Path, owner: Option<Owner>) -> io::Result<()> {
    match owner {
        Some(o) => lchown(p, Some(o.uid), Some(o.gid)),
        None => Ok(()),
    }
}

/// chmod with special bits; never called on symlinks.
pub fn chmod(p: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(p, fs::Permissions::from_mode(mode & 0o7777))
}

/// fsutil's `MkdirAll`: creates `path` and missing parents with `perm`,
/// owner and time; existing directories are left untouched. Returns the
/// directories it created, outermost first.
pub fn mkdir_all(
    path: &Path,
    perm: u32,
    owner: Option<Owner>,
    tm: Option<Time>,
) -> io::Result<Vec<PathBuf>> {
    match fs::metadata(path) {
        Ok(m) if m.is_dir() => return Ok(Vec::new()),
        Ok(_) => {
            return Err(io::Error::from_raw_os_error(
                rustix::io::Errno::NOTDIR.raw_os_error(),
            ));
        }
        Err(_) => {}
    }
    let mut created = match path.parent() {
        Some(parent) if parent != Path::new("/") && !parent.as_os_str().is_empty() => {
            mkdir_all(parent, perm, owner, tm)?
        }
        _ => Vec::new(),
    };
    if let Err(e) = fs::create_dir(path) {
        if fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
            return Ok(created);
        }
        return Err(e);
    }
    // chown first: it clears setuid/setgid bits that chmod may set.
    chown(path, owner)?;
    chmod(path, perm)?;
    utimes(path, tm)?;
    created.push(path.to_path_buf());
    Ok(created)
}

/// Re-applies the fixed time to created parents, whose mtimes changed when
/// their children were made.
pub fn fix_created_dirs(dirs: &[PathBuf], tm: Option<Time>) -> io::Result<()> {
    for d in dirs.iter().rev() {
        utimes(d, tm)?;
    }
    Ok(())
}
