//! The on-disk store a worker builds on: the metadata database, blobs, and layer directories.
//!
//! Invariant: a cache record names only layers whose directory exists and whose layer record is
//! committed in the same or an earlier transaction. Layer directories are created before their
//! records; a directory without a record is a leftover of an interrupted step and is removed
//! when the store opens (the store lock guarantees no other process is using it then). The same
//! holds for local source records and remembered checksums (`store/locals.rs`): they name only
//! recorded layers, and a layer record is removed in the transaction that drops what names it.

mod locals;

pub use locals::LocalRecord;

use kiln_content::blobs::BlobStore;
use kiln_content::lock::StoreLock;
use kiln_content::meta::{MetaDb, Table};
use kiln_snapshot::Snapshotter;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A result of a step: a stack of layers, bottom first. Empty is `scratch`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ref {
    pub layers: Arc<Vec<String>>,
}

impl Ref {
    pub fn scratch() -> Ref {
        Ref::default()
    }

    pub fn with_layer(&self, id: &str) -> Ref {
        let mut layers = (*self.layers).clone();
        layers.push(id.to_string());
        Ref {
            layers: Arc::new(layers),
        }
    }
}

/// What is known about a layer: where its compressed blob is, once computed or pulled.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LayerRecord {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blob: Option<LayerBlob>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LayerBlob {
    pub digest: String,
    pub diff_id: String,
    pub size: u64,
    pub media_type: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("creating store directory {path}: {source}")]
    Create {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] kiln_content::lock::LockError),
    #[error(transparent)]
    Meta(#[from] kiln_content::meta::MetaError),
    #[error(transparent)]
    Blobs(#[from] kiln_content::blobs::BlobError),
    #[error("snapshots: {0}")]
    Snapshot(String),
    #[error("layer {id}: {message}")]
    Layer { id: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

pub struct Store {
    root: PathBuf,
    pub meta: MetaDb,
    pub blobs: BlobStore,
    pub snapshots: Snapshotter,
    /// Layers made by this process and not (yet) named by a cache record.
    pending: std::sync::Mutex<HashSet<String>>,
    /// Local source transfers and checksums in flight (`store/locals.rs`).
    memory: locals::Memory,
    _lock: StoreLock,
}

/// A new layer directory (overlay upper + work) not yet recorded.
pub type NewLayer = kiln_snapshot::Layer;

impl Store {
    /// Opens (creating if needed) the store at `root`, waiting for any other process using it,
    /// and removes what an interrupted process left behind.
    pub fn open(root: &Path, waiting: impl FnOnce()) -> Result<Store, StoreError> {
        for dir in ["", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(|source| StoreError::Create { path, source })?;
        }
        let lock = StoreLock::acquire(root, waiting)?;
        let meta = MetaDb::open(&root.join("meta.redb"))?;
        let blobs = BlobStore::open(root)?;
        let snapshots = Snapshotter::open(root).map_err(|e| StoreError::Snapshot(e.to_string()))?;
        let store = Store {
            root: root.to_path_buf(),
            meta,
            blobs,
            snapshots,
            pending: Default::default(),
            memory: Default::default(),
            _lock: lock,
        };
        store.recover()?;
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// A directory for temporary files that is cleared whenever the store opens.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The directory of a layer. Ids come from the store itself; one that is not valid names a
    /// path that does not exist, so it reads as a missing layer.
    pub fn layer_dir(&self, id: &str) -> PathBuf {
        self.snapshots
            .layer_dir(id)
            .unwrap_or_else(|_| self.root.join("snapshots/.invalid"))
    }

    /// Crash recovery: unmount leftovers, drop unrecorded layers and temp files, and drop cache
    /// records whose layers are gone.
    fn recover(&self) -> Result<(), StoreError> {
        // Mounts first: a leftover mount holds an unrecorded layer that is removed below.
        let _ = kiln_snapshot::sweep(&self.root);
        let _ = self.blobs.sweep_ingest();
        let tmp = self.tmp_dir();
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(|source| StoreError::Create { path: tmp, source })?;

        let recorded: HashSet<String> = self
            .meta
            .entries(Table::Layers)?
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let snapshots = self.root.join("snapshots");
        let entries = std::fs::read_dir(&snapshots).map_err(|source| StoreError::Io {
            path: snapshots.clone(),
            source,
        })?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !recorded.contains(&name) {
                remove_tree(&entry.path());
            }
        }
        let mut stale = Vec::new();
        for (key, value) in self.meta.entries(Table::Cache)? {
            let ok = serde_json::from_slice::<Vec<Ref>>(&value)
                .map(|refs| {
                    refs.iter().all(|r| {
                        r.layers
                            .iter()
                            .all(|l| recorded.contains(l) && self.layer_dir(l).is_dir())
                    })
                })
                .unwrap_or(false);
            if !ok {
                stale.push(key);
            }
        }
        if !stale.is_empty() {
            self.meta.remove(Table::Cache, &stale)?;
        }
        self.recover_locals(&recorded)
    }

    /// Allocates a layer directory. It stays unrecorded until a cache record names it.
    pub fn new_layer(&self) -> Result<NewLayer, StoreError> {
        let layer = self
            .snapshots
            .new_layer()
            .map_err(|e| StoreError::Snapshot(e.to_string()))?;
        self.pending_layers().insert(layer.id.clone());
        Ok(layer)
    }

    /// Removes overlay's work directory once a layer is finished: it is not part of the layer.
    pub fn finish_layer(&self, layer: &NewLayer) {
        remove_tree(&layer.work);
    }

    /// Removes a layer that will never be recorded.
    pub fn discard_layer(&self, layer: &NewLayer) {
        self.pending_layers().remove(&layer.id);
        if let Ok(dir) = self.snapshots.layer_dir(&layer.id)
            && let Some(base) = dir.parent()
        {
            remove_tree(base);
        }
    }

    /// Records `refs` under `key`, with a layer record for every layer not yet recorded, in one
    /// transaction.
    pub fn record(&self, key: &str, refs: &[Ref]) -> Result<(), StoreError> {
        let value = serde_json::to_vec(refs).expect("refs serialise");
        let mut new_layers = Vec::new();
        for r in refs {
            for l in r.layers.iter() {
                if self.meta.get(Table::Layers, l)?.is_none() && !new_layers.contains(l) {
                    new_layers.push(l.clone());
                }
            }
        }
        let empty = serde_json::to_vec(&LayerRecord::default()).expect("record serialises");
        let mut records: Vec<(Table, &str, &[u8])> = new_layers
            .iter()
            .map(|l| (Table::Layers, l.as_str(), empty.as_slice()))
            .collect();
        records.push((Table::Cache, key, &value));
        kiln_content::blobs::failpoint("meta-before-commit");
        self.meta.put_all(&records)?;
        let mut pending = self.pending_layers();
        for r in refs {
            for l in r.layers.iter() {
                pending.remove(l);
            }
        }
        Ok(())
    }

    fn pending_layers(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Removes the layers this process made that no cache record names (what a failed or
    /// cancelled build, or an uncached source, leaves) and the layers that local source
    /// transfers replaced, and writes the checksums the build computed. Call it when no build
    /// is running (the daemon will need per-build leases instead).
    pub fn discard_pending(&self) {
        self.discard_unrecorded();
        self.after_build();
    }

    fn discard_unrecorded(&self) {
        let ids: Vec<String> = self.pending_layers().drain().collect();
        for id in ids {
            if let Ok(dir) = self.snapshots.layer_dir(&id)
                && let Some(base) = dir.parent()
            {
                remove_tree(base);
            }
        }
    }

    pub fn lookup(&self, key: &str) -> Result<Option<Vec<Ref>>, StoreError> {
        let Some(value) = self.meta.get(Table::Cache, key)? else {
            return Ok(None);
        };
        let refs: Vec<Ref> = match serde_json::from_slice(&value) {
            Ok(r) => r,
            Err(_) => return Ok(None),
        };
        // A record whose layers vanished is a miss, not an error.
        let present = refs
            .iter()
            .all(|r| r.layers.iter().all(|l| self.layer_dir(l).is_dir()));
        Ok(present.then_some(refs))
    }

    pub fn layer_record(&self, id: &str) -> Result<LayerRecord, StoreError> {
        Ok(self
            .meta
            .get(Table::Layers, id)?
            .and_then(|v| serde_json::from_slice(&v).ok())
            .unwrap_or_default())
    }

    pub fn set_layer_record(&self, id: &str, record: &LayerRecord) -> Result<(), StoreError> {
        let value = serde_json::to_vec(record).expect("record serialises");
        self.meta.put(Table::Layers, id, &value)?;
        Ok(())
    }
}

impl kiln_solver::Cache<Ref> for Store {
    fn load(&self, key: &str) -> Result<Option<Vec<Ref>>, String> {
        self.lookup(key).map_err(|e| e.to_string())
    }
    fn save(&self, key: &str, outputs: &[Ref]) -> Result<(), String> {
        self.record(key, outputs).map_err(|e| e.to_string())
    }
}

/// Removes a tree that may contain directories without write permission (overlay's work dir).
pub(crate) fn remove_tree(path: &Path) {
    if std::fs::remove_dir_all(path).is_ok() {
        return;
    }
    for entry in walkdir_dirs(path) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(0o700));
    }
    let _ = std::fs::remove_dir_all(path);
}

fn walkdir_dirs(path: &Path) -> Vec<PathBuf> {
    let mut out = vec![path.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        if let Ok(rd) = std::fs::read_dir(&out[i]) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    out.push(e.path());
                }
            }
        }
        i += 1;
    }
    out
}
