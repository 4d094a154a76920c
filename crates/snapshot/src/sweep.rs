//! Cleaning up after a killed process: its mounts under `root/mounts` and their mountpoints.

use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::UnmountFlags;

use crate::error::{Result, SnapshotError};

/// What [`sweep`] cleaned up.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    pub unmounted: Vec<PathBuf>,
    pub removed_dirs: Vec<PathBuf>,
}

/// Unmounts whatever a dead process left mounted under `root/mounts` and removes the
/// mountpoints. Mountpoints of live processes (named `<pid>-<n>`) are left alone, so several
/// processes can share one root.
pub fn sweep(root: &Path) -> Result<SweepReport> {
    let mounts_dir = root.join("mounts");
    let mounts_dir = match mounts_dir.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(SweepReport::default()),
        Err(e) => return Err(SnapshotError::io("resolve", mounts_dir, e)),
    };
    let mut report = SweepReport::default();

    let info = "/proc/self/mountinfo";
    let text = std::fs::read_to_string(info).map_err(|e| SnapshotError::io("read", info, e))?;
    let mut stale: Vec<PathBuf> = mount_points(&text)
        .into_iter()
        .filter(|p| owner_entry(&mounts_dir, p).is_some_and(|name| is_stale(&name)))
        .collect();
    // Deepest first, so that nested mounts go before the ones holding them.
    stale.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    stale.dedup();
    for target in stale {
        let plain = rustix::mount::unmount(&target, UnmountFlags::empty());
        if plain.is_err() {
            rustix::mount::unmount(&target, UnmountFlags::DETACH).map_err(|e| {
                SnapshotError::Unmount {
                    target: target.clone(),
                    source: e.into(),
                }
            })?;
        }
        report.unmounted.push(target);
    }

    let entries =
        std::fs::read_dir(&mounts_dir).map_err(|e| SnapshotError::io("read", &mounts_dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| SnapshotError::io("read", &mounts_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !is_stale(&name) {
            continue;
        }
        // Only rmdir: a mountpoint that is somehow still mounted must never be emptied.
        let path = entry.path();
        std::fs::remove_dir(&path).map_err(|e| SnapshotError::io("remove mountpoint", &path, e))?;
        report.removed_dirs.push(path);
    }
    Ok(report)
}

/// The first component under `mounts_dir`, if `path` lies below it.
fn owner_entry(mounts_dir: &Path, path: &Path) -> Option<String> {
    let rest = path.strip_prefix(mounts_dir).ok()?;
    let first = rest.components().next()?;
    Some(first.as_os_str().to_string_lossy().into_owned())
}

/// A mountpoint is stale when the process that made it is gone (or its name is not ours).
fn is_stale(name: &str) -> bool {
    let pid = name
        .split_once('-')
        .and_then(|(pid, _)| pid.parse::<u32>().ok());
    match pid {
        Some(pid) if pid == std::process::id() => false,
        Some(pid) => !Path::new(&format!("/proc/{pid}")).exists(),
        None => true,
    }
}

/// Mount points (field 5) of /proc/self/mountinfo, with octal escapes decoded.
fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape(field)))
        .collect()
}

fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_escapes() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - ext3 /dev/root rw\n\
                    37 35 0:5 / /proc rw - proc proc rw\n";
        assert_eq!(
            mount_points(text),
            vec![PathBuf::from("/mnt/with space"), PathBuf::from("/proc")]
        );
    }

    #[test]
    fn staleness_follows_the_owner_pid() {
        assert!(!is_stale(&format!("{}-3", std::process::id())));
        assert!(is_stale("4194303999-1"));
        assert!(is_stale("junk"));
        assert_eq!(
            owner_entry(Path::new("/r/mounts"), Path::new("/r/mounts/12-0/dev")),
            Some("12-0".into())
        );
        assert_eq!(
            owner_entry(Path::new("/r/mounts"), Path::new("/r/other")),
            None
        );
    }
}
