//! One store, many processes: a process holds the root's lock file for as long as it builds.
//! Others wait for it instead of failing; the kernel drops the lock when a holder dies, even by
//! kill -9, so a crash never leaves the store locked.

use rustix::fs::{FlockOperation, flock};
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("opening lock file {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("locking {path}: {source}")]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Held while a process uses the store; dropping it (or dying) releases the store.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    /// Takes the lock on `root/lock`, calling `waiting` once if another process holds it.
    pub fn acquire(root: &Path, waiting: impl FnOnce()) -> Result<StoreLock, LockError> {
        let path = root.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|source| LockError::Open {
                path: path.clone(),
                source,
            })?;
        if flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
            waiting();
            flock(&file, FlockOperation::LockExclusive).map_err(|e| LockError::Lock {
                path: path.clone(),
                source: e.into(),
            })?;
        }
        Ok(StoreLock { _file: file })
    }
}
