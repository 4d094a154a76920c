//! The on-disk layout: `root/snapshots/<id>/{fs,work}` and `root/mounts/<pid>-<n>`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, SnapshotError};
use crate::mount::{Mount, mount_at};

/// A layer directory (overlay upper-dir format) and its overlay work dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layer {
    pub id: String,
    /// The layer's content: `root/snapshots/<id>/fs`.
    pub dir: PathBuf,
    /// Overlay's scratch dir, on the same filesystem: `root/snapshots/<id>/work`.
    pub work: PathBuf,
}

/// Layer directories and mountpoints under one root.
#[derive(Debug)]
pub struct Snapshotter {
    root: PathBuf,
    next_mount: AtomicU64,
}

/// Ids are 12 hex digits: short, so that many lowerdirs fit in one page of mount options.
const ID_LEN: usize = 12;

impl Snapshotter {
    /// Opens (creating if needed) the layout under `root`.
    pub fn open(root: &Path) -> Result<Self> {
        for sub in ["snapshots", "mounts"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| SnapshotError::io("create", &dir, e))?;
        }
        // Absolute and free of symlinks, so mount options and mountinfo entries compare equal.
        let root = root
            .canonicalize()
            .map_err(|e| SnapshotError::io("resolve", root, e))?;
        Ok(Snapshotter {
            root,
            next_mount: AtomicU64::new(0),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates an empty layer with a fresh id.
    pub fn new_layer(&self) -> Result<Layer> {
        loop {
            let id = format!(
                "{:0width$x}",
                rand::random::<u64>() >> (64 - 4 * ID_LEN),
                width = ID_LEN
            );
            let base = self.root.join("snapshots").join(&id);
            match std::fs::create_dir(&base) {
                Ok(()) => {}
                // Another process (or an unlucky draw) has it: draw again.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(SnapshotError::io("create", &base, e)),
            }
            let layer = Layer {
                dir: base.join("fs"),
                work: base.join("work"),
                id,
            };
            for dir in [&layer.dir, &layer.work] {
                std::fs::create_dir(dir).map_err(|e| SnapshotError::io("create", dir, e))?;
            }
            return Ok(layer);
        }
    }

    /// The layer with this id, if its directory exists.
    pub fn layer(&self, id: &str) -> Result<Layer> {
        let dir = self.layer_dir(id)?;
        if !dir.is_dir() {
            return Err(SnapshotError::io(
                "open layer",
                dir,
                io::ErrorKind::NotFound.into(),
            ));
        }
        Ok(Layer {
            work: self.base(id)?.join("work"),
            dir,
            id: id.to_string(),
        })
    }

    /// `root/snapshots/<id>/fs`.
    pub fn layer_dir(&self, id: &str) -> Result<PathBuf> {
        Ok(self.base(id)?.join("fs"))
    }

    /// Deletes a layer. It must not be mounted.
    pub fn remove(&self, id: &str) -> Result<()> {
        let base = self.base(id)?;
        match std::fs::remove_dir_all(&base) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(SnapshotError::io("remove", base, e)),
        }
    }

    /// A fresh, empty mountpoint `root/mounts/<pid>-<n>`; the pid lets [`crate::sweep`] tell a
    /// dead process's leftovers from a live one's.
    pub fn mountpoint(&self) -> Result<PathBuf> {
        loop {
            let n = self.next_mount.fetch_add(1, Ordering::Relaxed);
            let dir = self
                .root
                .join("mounts")
                .join(format!("{}-{n}", std::process::id()));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(SnapshotError::io("create", dir, e)),
            }
        }
    }

    /// Mounts `lowers` (top-most first) and an optional writable `upper` layer on a fresh
    /// mountpoint, which is removed again when the mount is.
    pub fn mount(&self, lowers: &[PathBuf], upper: Option<&Layer>) -> Result<Mount> {
        let target = self.mountpoint()?;
        let upper = upper.map(|l| (l.dir.as_path(), l.work.as_path()));
        match mount_at(lowers, upper, &target, true) {
            Ok(m) => Ok(m),
            Err(e) => {
                let _ = std::fs::remove_dir(&target);
                Err(e)
            }
        }
    }

    /// A private tmpfs (mode 0700, no devices, setuid or exec) on a fresh mountpoint, removed
    /// with the mount: for data that must never reach the disk, such as secrets.
    pub fn mount_tmpfs(&self) -> Result<Mount> {
        let target = self.mountpoint()?;
        let flags = rustix::mount::MountFlags::NOSUID
            | rustix::mount::MountFlags::NODEV
            | rustix::mount::MountFlags::NOEXEC;
        match rustix::mount::mount(
            "tmpfs",
            &target,
            "tmpfs",
            flags,
            Some(c"mode=0700,size=16m"),
        ) {
            Ok(()) => Ok(Mount::new(target, true)),
            Err(e) => {
                let _ = std::fs::remove_dir(&target);
                Err(SnapshotError::Mount {
                    target,
                    source: e.into(),
                })
            }
        }
    }

    fn base(&self, id: &str) -> Result<PathBuf> {
        let valid = !id.is_empty()
            && id.len() <= 64
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(SnapshotError::InvalidId(id.to_string()));
        }
        Ok(self.root.join("snapshots").join(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_paths_nest() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Snapshotter::open(tmp.path()).unwrap();
        let l = s.new_layer().unwrap();
        assert_eq!(l.id.len(), ID_LEN);
        assert!(l.dir.is_dir() && l.work.is_dir());
        assert_eq!(s.layer_dir(&l.id).unwrap(), l.dir);
        assert_eq!(s.layer(&l.id).unwrap(), l);
        s.remove(&l.id).unwrap();
        assert!(!l.dir.exists());
        assert!(s.layer(&l.id).is_err());
    }

    #[test]
    fn ids_cannot_escape() {
        let tmp = tempfile::tempdir().unwrap();
        let s = Snapshotter::open(tmp.path()).unwrap();
        for bad in ["", "..", "a/b", "../../etc"] {
            assert!(
                matches!(s.remove(bad), Err(SnapshotError::InvalidId(_))),
                "{bad}"
            );
        }
    }
}
