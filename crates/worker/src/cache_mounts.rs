//! `RUN --mount=type=cache`: directories that outlive builds, keyed by the mount's id (and the
//! ref it starts from, as BuildKit keys them), shared between steps as the mount's `sharing`
//! asks. Their contents never enter a cache key or a layer.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::OwnedMutexGuard;

/// How concurrent steps share one cache directory (`pb::CacheSharingOpt`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Everyone at once.
    Shared,
    /// One step at a time; another one meanwhile gets a fresh directory of its own.
    Private,
    /// One step at a time; others wait.
    Locked,
}

/// The cache directories of a store.
pub struct CacheMounts {
    root: PathBuf,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A cache directory in use; a private one made because the shared one was busy is removed
/// on drop.
pub struct CacheDir {
    pub path: PathBuf,
    _guard: Option<OwnedMutexGuard<()>>,
    temporary: bool,
}

impl Drop for CacheDir {
    fn drop(&mut self) {
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

impl CacheMounts {
    /// Cache directories live in `root` (created when first needed).
    pub fn new(root: PathBuf) -> CacheMounts {
        CacheMounts {
            root,
            locks: Mutex::default(),
        }
    }

    /// The directory for `key`, made by `init` (which fills an empty directory) the first time.
    pub async fn acquire(
        &self,
        key: &str,
        sharing: Sharing,
        init: impl FnOnce(&Path) -> Result<(), String> + Send + 'static,
    ) -> Result<CacheDir, String> {
        let name = hex::encode(Sha256::digest(key.as_bytes()));
        let lock = self
            .locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(name.clone())
            .or_default()
            .clone();
        let (guard, temporary) = match sharing {
            Sharing::Shared => (None, false),
            Sharing::Locked => (Some(lock.lock_owned().await), false),
            Sharing::Private => match lock.try_lock_owned() {
                Ok(g) => (Some(g), false),
                Err(_) => (None, true),
            },
        };
        let root = self.root.clone();
        let path = tokio::task::spawn_blocking(move || {
            if temporary {
                let dir = root.join(format!("private-{name}-{:016x}", rand::random::<u64>()));
                fresh(&dir, init)?;
                Ok(dir)
            } else {
                ensure(&root, &name, init)
            }
        })
        .await
        .map_err(|e| e.to_string())??;
        Ok(CacheDir {
            path,
            _guard: guard,
            temporary,
        })
    }
}

/// `root/name`, made by `init` in a temporary directory and renamed into place, so a crash
/// never leaves a half-made one; if another step made it meanwhile, theirs is used.
fn ensure(
    root: &Path,
    name: &str,
    init: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<PathBuf, String> {
    let dir = root.join(name);
    if dir.is_dir() {
        return Ok(dir);
    }
    let tmp = root.join(format!(".new-{name}-{:016x}", rand::random::<u64>()));
    fresh(&tmp, init)?;
    if let Err(e) = std::fs::rename(&tmp, &dir) {
        let _ = std::fs::remove_dir_all(&tmp);
        if !dir.is_dir() {
            return Err(format!("cache mount {}: {e}", dir.display()));
        }
    }
    Ok(dir)
}

fn fresh(dir: &Path, init: impl FnOnce(&Path) -> Result<(), String>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cache mount {}: {e}", dir.display()))?;
    if let Err(e) = init(dir) {
        let _ = std::fs::remove_dir_all(dir);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts() -> (CacheMounts, PathBuf) {
        let dir = std::env::temp_dir().join(format!("kiln-cache-{:x}", rand::random::<u64>()));
        (CacheMounts::new(dir.clone()), dir)
    }

    #[tokio::test]
    async fn made_once_then_reused() {
        let (m, root) = mounts();
        let a = m
            .acquire("id", Sharing::Shared, |d| {
                std::fs::write(d.join("seed"), "1").map_err(|e| e.to_string())
            })
            .await
            .unwrap();
        std::fs::write(a.path.join("added"), "x").unwrap();
        let b = m
            .acquire("id", Sharing::Shared, |_| Err("not called".into()))
            .await
            .unwrap();
        assert_eq!(a.path, b.path);
        assert!(b.path.join("added").exists() && b.path.join("seed").exists());
        let other = m
            .acquire("other", Sharing::Shared, |_| Ok(()))
            .await
            .unwrap();
        assert_ne!(other.path, a.path);
        // A failed init leaves nothing behind.
        assert!(
            m.acquire("bad", Sharing::Shared, |_| Err("no".into()))
                .await
                .is_err()
        );
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 2);
        std::fs::remove_dir_all(root).unwrap();
    }

    #[tokio::test]
    async fn private_gets_its_own_while_busy_and_locked_waits() {
        let (m, root) = mounts();
        let first = m.acquire("p", Sharing::Private, |_| Ok(())).await.unwrap();
        let second = m.acquire("p", Sharing::Private, |_| Ok(())).await.unwrap();
        assert_ne!(first.path, second.path);
        let temp = second.path.clone();
        drop(second);
        assert!(!temp.exists(), "a temporary private instance is removed");

        let held = m.acquire("l", Sharing::Locked, |_| Ok(())).await.unwrap();
        let m = Arc::new(m);
        let m2 = m.clone();
        let waiter = tokio::spawn(async move {
            m2.acquire("l", Sharing::Locked, |_| Ok(()))
                .await
                .map(|d| d.path.clone())
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a locked cache waits for its holder");
        drop(held);
        assert!(waiter.await.unwrap().is_ok());
        drop(first);
        std::fs::remove_dir_all(root).unwrap();
    }
}
