//! ADD's archive unpacking: BuildKit's `unpack`, which runs go-archive's
//! `Untar` chrooted into the destination. Names, hard-link targets and the
//! symlinks met on the way are all resolved as if the destination were `/`,
//! as that chroot does: `../x` and `/x` land at `<dest>/x` and an absolute
//! symlink points back into the destination, so nothing lands outside it.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, lchown, symlink};
use std::path::{Path, PathBuf};

use rustix::fs::{CWD, FileType, Mode, makedev, mknodat};

use crate::actions::remove_all;
use crate::chown::Owner;
use crate::error::{FileOpError, Result};
use crate::fsops::{Time, chmod, mkdir_all, set_times};
use crate::resolve::{clean, display, resolve, resolve_bytes};
use kiln_oci::LayerError;
use kiln_oci::compression::open_decompressed;
use kiln_oci::tar::{Entry, Kind, Reader as TarReader};

/// go-archive's `ImpliedDirectoryMode`, for parents the archive leaves out.
const IMPLIED_DIR_MODE: u32 = 0o755;

/// Unpacks source `src` into directory `dest` when it is an archive (by
/// content: a tar, possibly compressed, whose first header reads); Ok(false)
/// means "not an archive, copy it". With `owner` every entry and every
/// directory created for `dest` gets it; without, entries keep the tar's ids.
pub(crate) fn unpack(
    src_root: &Path,
    src: &str,
    dest_root: &Path,
    dest: &str,
    owner: Option<Owner>,
    tm: Option<Time>,
) -> Result<bool> {
    let src_host = resolve(src_root, &clean(src), true)?;
    if !is_archive(&src_host) {
        return Ok(false);
    }
    let dest_host = resolve(dest_root, &clean(dest), true)?;
    mkdir_all(&dest_host, 0o755, owner, tm)
        .map_err(|e| FileOpError::io("mkdir", display(dest_root, &dest_host), e))?;
    let shown = clean(src);
    let read_err = |e| FileOpError::io("unpack", shown.clone(), e);
    let mut tr = TarReader::new(open_decompressed(&src_host).map_err(read_err)?);
    let mut u = Unpacker {
        dest: &dest_host,
        dest_root,
        owner,
        dirs: Vec::new(),
    };
    while let Some(e) = tr.next_entry().map_err(|e| read_err(io_error(e)))? {
        u.entry(&e, &mut tr)?;
    }
    // Directory times last: creating their children changed them.
    for (p, at, mt) in &u.dirs {
        set_times(p, *at, *mt).map_err(|e| u.err("set times of", p, e))?;
    }
    Ok(true)
}

/// BuildKit's `isArchivePath`: a regular file that decompresses (or not)
/// into a stream whose first tar header reads.
fn is_archive(p: &Path) -> bool {
    if !fs::symlink_metadata(p).is_ok_and(|m| m.is_file()) {
        return false;
    }
    let Ok(r) = open_decompressed(p) else {
        return false;
    };
    matches!(TarReader::new(r).next_entry(), Ok(Some(_)))
}

/// The tar reader's error as the I/O error an unpack failure carries.
fn io_error(e: LayerError) -> io::Error {
    match e {
        LayerError::Read(e) => e,
        e => io::Error::new(io::ErrorKind::InvalidData, e),
    }
}

struct Unpacker<'a> {
    dest: &'a Path,
    dest_root: &'a Path,
    owner: Option<Owner>,
    /// Directories extracted, with the times to give them at the end.
    dirs: Vec<(PathBuf, Time, Time)>,
}

impl Unpacker<'_> {
    fn err(&self, op: &'static str, p: &Path, e: io::Error) -> FileOpError {
        FileOpError::io(op, display(self.dest_root, p), e)
    }

    fn invalid(&self, p: &Path, reason: String) -> FileOpError {
        FileOpError::Archive {
            path: display(self.dest_root, p),
            reason,
        }
    }

    /// `name` inside the destination; the last component is not followed.
    fn place(&self, comps: &[&[u8]]) -> Result<PathBuf> {
        if comps.is_empty() {
            return Ok(self.dest.to_path_buf());
        }
        resolve_bytes(self.dest, &comps.join(&b'/'), false)
    }

    fn entry<R: io::Read>(&mut self, e: &Entry, tr: &mut TarReader<R>) -> Result<()> {
        let Some(comps) = clean_name(&e.name) else {
            // "." is the destination itself, which is left as it is.
            return Ok(());
        };
        if comps.len() > 1 {
            self.implied_parents(&comps[..comps.len() - 1])?;
        }
        let path = self.place(&comps)?;
        // Anything in the way is replaced, except a dir by a dir (merged).
        if let Ok(fi) = fs::symlink_metadata(&path)
            && !(fi.is_dir() && e.kind == Kind::Dir)
        {
            if path == self.dest {
                return Err(self.invalid(&path, "cannot replace the destination".into()));
            }
            remove_all(&path).map_err(|er| self.err("remove", &path, er))?;
        }
        let mut link_to_file = false;
        match e.kind {
            Kind::Dir => {
                if !fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    fs::create_dir(&path).map_err(|er| self.err("mkdir", &path, er))?;
                }
            }
            Kind::Regular => {
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|er| self.err("create", &path, er))?;
                io::copy(&mut tr.data(), &mut f).map_err(|er| self.err("write", &path, er))?;
            }
            Kind::HardLink => {
                let target = self.place(&clean_name(&e.link).unwrap_or_default())?;
                fs::hard_link(&target, &path).map_err(|er| self.err("hard link", &path, er))?;
                link_to_file = fs::symlink_metadata(&target).is_ok_and(|m| !m.is_symlink());
            }
            Kind::Symlink => {
                symlink(OsStr::from_bytes(&e.link), &path)
                    .map_err(|er| self.err("symlink", &path, er))?;
            }
            Kind::Char | Kind::Block | Kind::Fifo => {
                let ft = match e.kind {
                    Kind::Char => FileType::CharacterDevice,
                    Kind::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                let mode = Mode::from_raw_mode(e.mode & 0o7777);
                mknodat(CWD, &path, ft, mode, makedev(e.dev_major, e.dev_minor))
                    .map_err(|er| self.err("mknod", &path, er.into()))?;
            }
            Kind::Sparse => {
                return Err(FileOpError::Unsupported {
                    path: display(self.dest_root, &path),
                    what: "a sparse file in an archive",
                });
            }
            // go-archive refuses a contiguous file ('7') like any other unknown kind.
            Kind::Contiguous | Kind::Other(_) => {
                let k = match e.kind {
                    Kind::Other(k) => k,
                    _ => b'7',
                };
                let reason = format!("unhandled tar header type {:?}", k as char);
                return Err(self.invalid(&path, reason));
            }
        }
        self.metadata(e, &path, link_to_file)
    }

    /// Missing parents of an entry: 0755 and root-owned, as go-archive makes
    /// them (even under --chown), without times.
    fn implied_parents(&self, parent: &[&[u8]]) -> Result<()> {
        let lexical = self.place(parent)?;
        match fs::symlink_metadata(&lexical) {
            Err(er) if er.kind() == io::ErrorKind::NotFound => {}
            _ => return Ok(()),
        }
        let p = resolve_bytes(self.dest, &parent.join(&b'/'), true)?;
        let root = Some(Owner { uid: 0, gid: 0 });
        mkdir_all(&p, IMPLIED_DIR_MODE, root, None).map_err(|er| self.err("mkdir", &p, er))?;
        Ok(())
    }

    /// Owner, xattrs, mode and times, in go-archive's order (chown first:
    /// it clears setuid bits).
    fn metadata(&mut self, e: &Entry, path: &Path, link_to_file: bool) -> Result<()> {
        let (uid, gid) = match self.owner {
            Some(o) => (o.uid, o.gid),
            None => match (u32::try_from(e.uid), u32::try_from(e.gid)) {
                (Ok(u), Ok(g)) => (u, g),
                _ => return Err(self.invalid(path, format!("bad owner {}:{}", e.uid, e.gid))),
            },
        };
        lchown(path, Some(uid), Some(gid)).map_err(|er| self.err("chown", path, er))?;
        for (k, v) in &e.xattrs {
            if let Err(er) = xattr::set(path, OsStr::from_bytes(k), v) {
                // BuildKit's BestEffortXattrs: unsupported or refused is fine.
                let soft = [rustix::io::Errno::NOTSUP, rustix::io::Errno::PERM]
                    .iter()
                    .any(|c| er.raw_os_error() == Some(c.raw_os_error()));
                if !soft {
                    return Err(self.err("set xattr on", path, er));
                }
            }
        }
        let plain = match e.kind {
            Kind::Symlink => false,
            Kind::HardLink => link_to_file,
            _ => true,
        };
        if plain {
            chmod(path, e.mode).map_err(|er| self.err("chmod", path, er))?;
        }
        let mtime = (e.mtime, e.mtime_nsec);
        let mt = bound(mtime);
        let at = bound(e.atime.map_or(mtime, |a| a.max(mtime)));
        if e.kind == Kind::Dir {
            self.dirs.push((path.to_path_buf(), at, mt));
        } else if plain || e.kind == Kind::Symlink {
            set_times(path, at, mt).map_err(|er| self.err("set times of", path, er))?;
        }
        Ok(())
    }
}

/// The components of an entry name after Go's `filepath.Clean` and a join
/// onto `/` (so `..` stops at the top); None for `.`, which go-archive skips.
fn clean_name(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let mut out: Vec<&[u8]> = Vec::new();
    let mut above = false;
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => above |= out.pop().is_none(),
            c => out.push(c),
        }
    }
    if out.is_empty() && !above && !raw.starts_with(b"/") {
        return None;
    }
    Some(out)
}

/// go-archive's `boundTime`: before the epoch or past what a timespec holds
/// in ns becomes the epoch.
fn bound((sec, nsec): (i64, u32)) -> Time {
    const MAX: (i64, u32) = (9_223_372_036, 854_775_807);
    if sec < 0 || (sec, nsec) > MAX {
        return Time { sec: 0, nsec: 0 };
    }
    Time {
        sec,
        nsec: i64::from(nsec),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_clean_like_go() {
        let c = |s: &str| clean_name(s.as_bytes()).map(|v| v.join(&b'/'));
        assert_eq!(c("./"), None);
        assert_eq!(c(""), None);
        assert_eq!(c("a/.."), None);
        assert_eq!(c("/"), Some(Vec::new()));
        assert_eq!(c("../"), Some(Vec::new()));
        assert_eq!(c("./a/b/"), Some(b"a/b".to_vec()));
        assert_eq!(c("../../etc/passwd"), Some(b"etc/passwd".to_vec()));
        assert_eq!(c("/abs/x"), Some(b"abs/x".to_vec()));
    }

    #[test]
    fn times_are_bounded() {
        assert_eq!(bound((-5, 0)), Time { sec: 0, nsec: 0 });
        assert_eq!(bound((i64::MAX, 0)), Time { sec: 0, nsec: 0 });
        assert_eq!(bound((7, 9)), Time { sec: 7, nsec: 9 });
    }
}
