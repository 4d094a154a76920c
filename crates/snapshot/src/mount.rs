//! Mounting a stack of layer directories: overlayfs, or a bind mount when overlay is not needed.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountFlags, MoveMountFlags, UnmountFlags,
};

use crate::error::{Result, SnapshotError};

/// Mount options must fit in one page; keep BuildKit's margin of 512 bytes below it.
const OPTIONS_LIMIT: usize = 4096 - 512;
/// `fsconfig(FSCONFIG_SET_STRING)` copies at most 256 bytes including the NUL.
const FSCONFIG_STRING_LIMIT: usize = 255;
/// Options that make the upper dir a complete, self-contained diff.
const DIFF_OPTIONS: [(&str, &str); 3] = [
    ("index", "off"),
    ("metacopy", "off"),
    ("redirect_dir", "off"),
];

/// A mounted filesystem. Unmounted by [`Mount::unmount`], or on drop (lazily if it is busy).
#[derive(Debug)]
pub struct Mount {
    target: PathBuf,
    mounted: bool,
    remove_target: bool,
}

impl Mount {
    pub(crate) fn new(target: PathBuf, remove_target: bool) -> Self {
        Mount {
            target,
            mounted: true,
            remove_target,
        }
    }

    /// Where the merged filesystem is visible.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Unmounts now, retrying briefly while the mount is busy.
    pub fn unmount(mut self) -> Result<()> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> Result<()> {
        if self.mounted {
            let mut attempt = 0;
            loop {
                match rustix::mount::unmount(&self.target, UnmountFlags::empty()) {
                    Ok(()) => break,
                    // Already gone (someone else unmounted it): nothing left to do.
                    Err(Errno::INVAL) | Err(Errno::NOENT) => break,
                    Err(Errno::BUSY) if attempt < 5 => {
                        attempt += 1;
                        thread::sleep(Duration::from_millis(10 << attempt));
                    }
                    Err(e) => {
                        return Err(SnapshotError::Unmount {
                            target: self.target.clone(),
                            source: e.into(),
                        });
                    }
                }
            }
            self.mounted = false;
        }
        if self.remove_target {
            self.remove_target = false;
            std::fs::remove_dir(&self.target)
                .map_err(|e| SnapshotError::io("remove mountpoint", &self.target, e))?;
        }
        Ok(())
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted
            && rustix::mount::unmount(&self.target, UnmountFlags::empty()).is_err()
            // Last resort: detach so that nothing new can enter it; the kernel frees it later.
            && rustix::mount::unmount(&self.target, UnmountFlags::DETACH).is_err()
        {
            return;
        }
        self.mounted = false;
        if self.remove_target {
            let _ = std::fs::remove_dir(&self.target);
        }
    }
}

/// Mounts `lowers` (top-most first) with an optional `(upper, work)` pair on `target`.
///
/// - zero lowers and an upper: the upper is bind-mounted read-write, so it is the result itself;
/// - one lower and no upper: a read-only bind mount (overlay needs two lowers without an upper);
/// - otherwise overlayfs with `index=off,metacopy=off,redirect_dir=off`.
pub fn mount(lowers: &[PathBuf], upper: Option<(&Path, &Path)>, target: &Path) -> Result<Mount> {
    mount_at(lowers, upper, target, false)
}

pub(crate) fn mount_at(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
    remove_target: bool,
) -> Result<Mount> {
    let mount_err = |source: io::Error| SnapshotError::Mount {
        target: target.to_path_buf(),
        source,
    };
    match (lowers, upper) {
        ([], None) => Err(SnapshotError::InvalidMount {
            target: target.to_path_buf(),
            reason: "no layers to mount".into(),
        }),
        ([], Some((upper, _))) => {
            bind(upper, target, false).map_err(mount_err)?;
            Ok(Mount::new(target.to_path_buf(), remove_target))
        }
        ([only], None) => {
            bind(only, target, true).map_err(mount_err)?;
            Ok(Mount::new(target.to_path_buf(), remove_target))
        }
        _ => {
            overlay(lowers, upper, target).map_err(mount_err)?;
            Ok(Mount::new(target.to_path_buf(), remove_target))
        }
    }
}

fn bind(source: &Path, target: &Path, readonly: bool) -> io::Result<()> {
    rustix::mount::mount_bind(source, target)?;
    if readonly {
        // A bind mount ignores MS_RDONLY on creation; it takes a remount to apply it.
        if let Err(e) =
            rustix::mount::mount_remount(target, MountFlags::BIND | MountFlags::RDONLY, "")
        {
            let _ = rustix::mount::unmount(target, UnmountFlags::DETACH);
            return Err(e.into());
        }
    }
    Ok(())
}

fn overlay(lowers: &[PathBuf], upper: Option<(&Path, &Path)>, target: &Path) -> io::Result<()> {
    // Directories opened to spell long or awkward paths as /proc/self/fd/N; they must stay
    // open until the mount call returns.
    let mut held = Vec::new();
    let plain = legacy_options(lowers, upper, &mut held, false)?;
    if plain.len() < OPTIONS_LIMIT && held.is_empty() {
        return legacy_mount(&plain, target);
    }
    match new_api_mount(lowers, upper, target, &mut held) {
        Ok(()) => Ok(()),
        // No `lowerdir+` (kernel < 6.8) or no fsopen: fall back to fd paths, which are short.
        Err(e) if matches!(Errno::from_io_error(&e), Some(Errno::INVAL | Errno::NOSYS)) => {
            let short = legacy_options(lowers, upper, &mut held, true)?;
            if short.len() >= 4096 {
                return Err(io::Error::other(format!(
                    "overlay options are {} bytes even with short paths",
                    short.len()
                )));
            }
            legacy_mount(&short, target)
        }
        Err(e) => Err(e),
    }
}

fn legacy_mount(options: &str, target: &Path) -> io::Result<()> {
    let data = std::ffi::CString::new(options).map_err(io::Error::other)?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        data.as_c_str(),
    )?;
    Ok(())
}

fn legacy_options(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    held: &mut Vec<OwnedFd>,
    force_short: bool,
) -> io::Result<String> {
    let mut spelled = Vec::with_capacity(lowers.len());
    for lower in lowers {
        spelled.push(spell(lower, held, force_short)?);
    }
    let mut options = format!("lowerdir={}", spelled.join(":"));
    if let Some((upper, work)) = upper {
        options.push_str(",upperdir=");
        options.push_str(&spell(upper, held, false)?);
        options.push_str(",workdir=");
        options.push_str(&spell(work, held, false)?);
    }
    for (key, value) in DIFF_OPTIONS {
        options.push_str(&format!(",{key}={value}"));
    }
    Ok(options)
}

/// A path as overlay's option parser can take it: as is when that is safe, otherwise through
/// an open directory's /proc/self/fd entry (short, and free of `,` `:` `\`).
fn spell(path: &Path, held: &mut Vec<OwnedFd>, force_short: bool) -> io::Result<String> {
    match path.to_str() {
        Some(s)
            if !force_short
                && s.len() <= FSCONFIG_STRING_LIMIT
                && !s.contains([',', ':', '\\']) =>
        {
            Ok(s.to_string())
        }
        _ => fd_path(path, held),
    }
}

fn fd_path(path: &Path, held: &mut Vec<OwnedFd>) -> io::Result<String> {
    let fd = rustix::fs::open(
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let spelled = format!("/proc/self/fd/{}", fd.as_raw_fd());
    held.push(fd);
    Ok(spelled)
}

/// The new mount API adds one lower at a time (`lowerdir+`), so no page limit applies.
fn new_api_mount(
    lowers: &[PathBuf],
    upper: Option<(&Path, &Path)>,
    target: &Path,
    held: &mut Vec<OwnedFd>,
) -> io::Result<()> {
    use rustix::mount::{fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount};
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    for lower in lowers {
        let value = spell(lower, held, false)?;
        fsconfig_set_string(&fs, "lowerdir+", value.as_str())?;
    }
    if let Some((upper, work)) = upper {
        let value = spell(upper, held, false)?;
        fsconfig_set_string(&fs, "upperdir", value.as_str())?;
        let value = spell(work, held, false)?;
        fsconfig_set_string(&fs, "workdir", value.as_str())?;
    }
    for (key, value) in DIFF_OPTIONS {
        fsconfig_set_string(&fs, key, value)?;
    }
    fsconfig_create(&fs)?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    move_mount(
        &mnt,
        "",
        CWD,
        target,
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_carry_diff_flags_and_order() {
        let mut held = Vec::new();
        let lowers = [PathBuf::from("/a/top"), PathBuf::from("/a/bottom")];
        let o = legacy_options(
            &lowers,
            Some((Path::new("/u"), Path::new("/w"))),
            &mut held,
            false,
        )
        .unwrap();
        assert_eq!(
            o,
            "lowerdir=/a/top:/a/bottom,upperdir=/u,workdir=/w,index=off,metacopy=off,redirect_dir=off"
        );
        assert!(held.is_empty());
    }

    /// The fallback for kernels without `lowerdir+`: every lower spelled as /proc/self/fd/N.
    #[test]
    fn fd_spelled_lowers_mount_on_the_legacy_api() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let long = tmp.path().join("x".repeat(200));
        let mut lowers = Vec::new();
        for i in 0..30 {
            let dir = long.join(format!("layer-{i:02}"));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("which"), i.to_string()).unwrap();
            lowers.push(dir);
        }
        let target = tmp.path().join("merged");
        std::fs::create_dir(&target).unwrap();
        let mut held = Vec::new();
        let options = legacy_options(&lowers, None, &mut held, true).unwrap();
        assert!(options.len() < 1024, "{}", options.len());
        legacy_mount(&options, &target).unwrap();
        drop(held); // the mount keeps its own references
        let m = Mount::new(target.clone(), false);
        assert_eq!(std::fs::read_to_string(target.join("which")).unwrap(), "0");
        m.unmount().unwrap();
    }

    #[test]
    fn awkward_paths_are_spelled_through_fds() {
        let dir = std::env::temp_dir();
        let odd = dir.join(format!("kiln,snap:{}", std::process::id()));
        std::fs::create_dir_all(&odd).unwrap();
        let mut held = Vec::new();
        let s = spell(&odd, &mut held, false).unwrap();
        assert!(s.starts_with("/proc/self/fd/"), "{s}");
        assert_eq!(held.len(), 1);
        std::fs::remove_dir(&odd).unwrap();
    }
}
