//! mkdir, mkfile, rm and symlink actions (BuildKit's file backend).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::symlink as make_symlink;
use std::path::Path;

use kiln_proto::pb::{FileActionMkDir, FileActionMkFile, FileActionRm, FileActionSymlink};

use crate::chown::Owner;
use crate::error::{FileOpError, Result};
use crate::fsops::{Time, chmod, chown, mkdir_all, utimes};
use crate::pattern::resolve_wildcards;
use crate::resolve::{clean, clean_keep_trailing, display, resolve};

/// Creates a directory. An existing directory is left exactly as it is
/// (mode, owner and time), with or without `make_parents`.
pub fn mkdir(root: &Path, a: &FileActionMkDir, owner: Option<Owner>) -> Result<()> {
    let p = resolve(root, &clean(&a.path), true)?;
    let mode = a.mode as u32 & 0o777;
    let tm = Time::from_action(a.timestamp);
    if a.make_parents {
        mkdir_all(&p, mode, owner, tm)
            .map_err(|e| FileOpError::io("mkdir", display(root, &p), e))?;
        return Ok(());
    }
    match fs::create_dir(&p) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(FileOpError::io("mkdir", display(root, &p), e)),
    }
    let shown = || display(root, &p);
    chown(&p, owner).map_err(|e| FileOpError::io("chown", shown(), e))?;
    chmod(&p, mode).map_err(|e| FileOpError::io("chmod", shown(), e))?;
    utimes(&p, tm).map_err(|e| FileOpError::io("set times of", shown(), e))
}

/// Writes a file, replacing the content of an existing one (whose mode is
/// kept, as `os.WriteFile` does).
pub fn mkfile(root: &Path, a: &FileActionMkFile, owner: Option<Owner>) -> Result<()> {
    let p = resolve(root, &clean(&a.path), true)?;
    let shown = || display(root, &p);
    let existed = fs::symlink_metadata(&p).is_ok();
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .map_err(|e| FileOpError::io("create", shown(), e))?;
    f.write_all(&a.data)
        .map_err(|e| FileOpError::io("write", shown(), e))?;
    drop(f);
    chown(&p, owner).map_err(|e| FileOpError::io("chown", shown(), e))?;
    if !existed {
        chmod(&p, a.mode as u32 & 0o777).map_err(|e| FileOpError::io("chmod", shown(), e))?;
    }
    utimes(&p, Time::from_action(a.timestamp))
        .map_err(|e| FileOpError::io("set times of", shown(), e))
}

/// Creates a symlink at `newpath` pointing at `oldpath` (kept verbatim).
pub fn symlink(root: &Path, a: &FileActionSymlink, owner: Option<Owner>) -> Result<()> {
    let p = resolve(root, &clean(&a.newpath), true)?;
    let shown = || display(root, &p);
    make_symlink(&a.oldpath, &p).map_err(|e| FileOpError::io("symlink", shown(), e))?;
    chown(&p, owner).map_err(|e| FileOpError::io("chown", shown(), e))?;
    utimes(&p, Time::from_action(a.timestamp))
        .map_err(|e| FileOpError::io("set times of", shown(), e))
}

/// Removes a path (recursively); with `allow_wildcard` every match.
pub fn rm(root: &Path, a: &FileActionRm) -> Result<()> {
    if a.allow_wildcard {
        for m in resolve_wildcards(root, &clean_keep_trailing(&a.path), false)? {
            rm_path(root, &m, a.allow_not_found)?;
        }
        return Ok(());
    }
    rm_path(root, &a.path, a.allow_not_found)
}

fn rm_path(root: &Path, src: &str, allow_not_found: bool) -> Result<()> {
    let src = clean(src);
    let Some((dir, base)) = src.rsplit_once('/').filter(|(_, b)| !b.is_empty()) else {
        return Err(FileOpError::InvalidOp("rm: invalid empty path".to_string()));
    };
    let p = resolve(root, dir, true)?.join(base);
    if !allow_not_found {
        // Like BuildKit's os.Stat, a dangling link counts as missing.
        let followed = resolve(root, &src, true)?;
        if fs::symlink_metadata(&followed).is_err() {
            return Err(FileOpError::NotFound { path: src });
        }
    }
    remove_all(&p).map_err(|e| FileOpError::io("remove", display(root, &p), e))
}

/// `os.RemoveAll`: a missing path is fine; symlinks are removed, not followed.
pub fn remove_all(p: &Path) -> io::Result<()> {
    match fs::symlink_metadata(p) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(p),
        Ok(_) => fs::remove_file(p),
    }
}
