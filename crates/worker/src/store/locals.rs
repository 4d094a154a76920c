//! What the store remembers between builds besides cache records: the last transfer of each
//! local source (its layer and the manifest of what was sent, so the next build copies only
//! what changed) and content checksums of layers (which never change, so neither do they).
//!
//! Crash safety follows the store's invariant. A transfer's layer directory and its manifest
//! (`snapshots/<id>/context.manifest`, next to `fs`) are written first; then one transaction
//! records the layer, points the source's record at it and lists the layer it replaces as
//! retired. Retired layers are removed when no build runs (after a solve, or when the store
//! opens): one transaction drops their layer records and the checksums naming them, then their
//! directories go. A crash before a commit leaves an unrecorded directory, which opening the
//! store removes; a crash after one leaves work that the next opening finishes.

use super::{LayerRecord, Ref, Store, StoreError, remove_tree};
use kiln_content::meta::Table;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// The last transfer of a local source identity (name, client directory and filters).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalRecord {
    /// The name and client directory, whatever the filters: a transfer with other filters may
    /// take unchanged files from this one.
    pub origin: String,
    /// The layer holding the copy.
    pub layer: String,
    /// Hex sha256 of the layer's manifest.
    pub manifest: String,
    /// When it was made (ns since the epoch): an origin's oldest records are dropped first.
    pub created: u128,
    /// Layers this record replaced, to remove once no build can be using them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<String>,
}

/// How many identities (filter sets) of one client directory keep their transfer.
const KEEP_PER_ORIGIN: usize = 4;

/// The store's memory that is not cache records: per-identity locks, checksums to write.
#[derive(Default)]
pub(super) struct Memory {
    locks: Mutex<HashMap<String, Arc<Mutex<()>>>>,
    /// Checksums computed by this process, written after the build: key -> (layers, sum).
    checksums: Mutex<HashMap<String, (Vec<String>, String)>>,
    /// A record replaced a layer since the last retirement.
    retire_due: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn parse(value: &[u8]) -> Option<LocalRecord> {
    serde_json::from_slice(value).ok()
}

/// The key of a remembered checksum. Layer ids are never reused, a layer never changes, and
/// the scheme's version is part of it.
fn checksum_key(layers: &[String], path: &str, opts: &str) -> String {
    format!(
        "{}\0{}\0{path}\0{opts}",
        kiln_fileop::CHECKSUM_VERSION,
        layers.join(",")
    )
}

/// The layers a checksum key names.
fn checksum_layers(key: &str) -> impl Iterator<Item = &str> {
    key.split('\0')
        .nth(1)
        .unwrap_or("")
        .split(',')
        .filter(|l| !l.is_empty())
}

impl Store {
    /// Where a transfer's manifest lives: next to the layer's `fs`, removed with it.
    pub fn manifest_path(&self, layer: &str) -> PathBuf {
        self.layer_dir(layer).with_file_name("context.manifest")
    }

    /// Serialises transfers of one identity within this process (one must not retire a layer
    /// another is reading).
    pub fn local_lock(&self, identity: &str) -> Arc<Mutex<()>> {
        lock(&self.memory.locks)
            .entry(identity.to_string())
            .or_default()
            .clone()
    }

    /// The transfer to start from: `identity`'s own record (true), else the newest record of
    /// the same origin (false); only one whose layer directory exists.
    pub fn local_previous(
        &self,
        identity: &str,
        origin: &str,
    ) -> Result<Option<(LocalRecord, bool)>, StoreError> {
        let usable = |r: &LocalRecord| self.layer_dir(&r.layer).is_dir();
        if let Some(r) = self
            .meta
            .get(Table::Locals, identity)?
            .and_then(|v| parse(&v))
            && usable(&r)
        {
            return Ok(Some((r, true)));
        }
        let newest = self
            .meta
            .entries(Table::Locals)?
            .into_iter()
            .filter_map(|(_, v)| parse(&v))
            .filter(|r| r.origin == origin && usable(r))
            .max_by_key(|r| r.created);
        Ok(newest.map(|r| (r, false)))
    }

    /// Records `record` as `identity`'s last transfer, with its layer, in one transaction. The
    /// layer it replaces (and the oldest records of the origin beyond the few kept) are
    /// retired: removed after the build.
    pub fn record_local(&self, identity: &str, record: &LocalRecord) -> Result<(), StoreError> {
        let empty = serde_json::to_vec(&LayerRecord::default()).expect("record serialises");
        self.meta.update(|tx| -> Result<(), StoreError> {
            let mut rec = record.clone();
            if let Some(old) = tx.get(Table::Locals, identity)?.and_then(|v| parse(&v)) {
                rec.retired.extend(old.retired);
                rec.retired.push(old.layer);
            }
            let mut same: Vec<(String, LocalRecord)> = tx
                .entries(Table::Locals)?
                .into_iter()
                .filter(|(k, _)| k != identity)
                .filter_map(|(k, v)| Some((k, parse(&v)?)))
                .filter(|(_, r)| r.origin == rec.origin)
                .collect();
            if same.len() >= KEEP_PER_ORIGIN {
                same.sort_by_key(|(_, r)| r.created);
                for (k, r) in same.drain(..=same.len() - KEEP_PER_ORIGIN) {
                    tx.remove(Table::Locals, &k)?;
                    rec.retired.extend(r.retired);
                    rec.retired.push(r.layer);
                }
            }
            rec.retired.sort();
            rec.retired.dedup();
            rec.retired.retain(|l| *l != rec.layer);
            if tx.get(Table::Layers, &rec.layer)?.is_none() {
                tx.put(Table::Layers, &rec.layer, &empty)?;
            }
            let value = serde_json::to_vec(&rec).expect("record serialises");
            tx.put(Table::Locals, identity, &value)?;
            kiln_content::blobs::failpoint("local-before-commit");
            Ok(())
        })?;
        kiln_content::blobs::failpoint("local-after-commit");
        self.pending_layers().remove(&record.layer);
        self.memory
            .retire_due
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Removes retired layers that nothing names any more (no cache record, no local source
    /// record). Call it when no build is running.
    pub(super) fn retire_replaced(&self) -> Result<(), StoreError> {
        let locals = self.meta.entries(Table::Locals)?;
        if !locals
            .iter()
            .any(|(_, v)| parse(v).is_some_and(|r| !r.retired.is_empty()))
        {
            return Ok(());
        }
        let removed = self.meta.update(|tx| -> Result<Vec<String>, StoreError> {
            let records: Vec<(String, LocalRecord)> = tx
                .entries(Table::Locals)?
                .into_iter()
                .filter_map(|(k, v)| Some((k, parse(&v)?)))
                .collect();
            let mut named: HashSet<String> = records.iter().map(|(_, r)| r.layer.clone()).collect();
            for (_, v) in tx.entries(Table::Cache)? {
                if let Ok(refs) = serde_json::from_slice::<Vec<Ref>>(&v) {
                    named.extend(refs.iter().flat_map(|r| r.layers.iter().cloned()));
                }
            }
            let mut removed = Vec::new();
            for (key, mut rec) in records.into_iter().filter(|(_, r)| !r.retired.is_empty()) {
                for id in std::mem::take(&mut rec.retired) {
                    if !named.contains(&id) && !removed.contains(&id) {
                        tx.remove(Table::Layers, &id)?;
                        removed.push(id);
                    }
                }
                let value = serde_json::to_vec(&rec).expect("record serialises");
                tx.put(Table::Locals, &key, &value)?;
            }
            for (key, _) in tx.entries(Table::Checksums)? {
                if checksum_layers(&key).any(|l| removed.iter().any(|r| r == l)) {
                    tx.remove(Table::Checksums, &key)?;
                }
            }
            Ok(removed)
        })?;
        // Unrecorded now: a crash before this is finished by the next opening.
        for id in removed {
            if let Ok(dir) = self.snapshots.layer_dir(&id)
                && let Some(base) = dir.parent()
            {
                remove_tree(base);
            }
        }
        Ok(())
    }

    /// Crash recovery for local records: finish retirements, then drop records whose layer is
    /// gone (the layers they retired were handled first).
    pub(super) fn recover_locals(&self, recorded: &HashSet<String>) -> Result<(), StoreError> {
        self.retire_replaced()?;
        let stale: Vec<String> = self
            .meta
            .entries(Table::Locals)?
            .into_iter()
            .filter(|(_, v)| {
                parse(v).is_none_or(|r| {
                    !recorded.contains(&r.layer) || !self.layer_dir(&r.layer).is_dir()
                })
            })
            .map(|(k, _)| k)
            .collect();
        if !stale.is_empty() {
            self.meta.remove(Table::Locals, &stale)?;
        }
        Ok(())
    }

    /// What runs after a build: retirements, and writing the checksums it computed.
    pub(super) fn after_build(&self) {
        if self
            .memory
            .retire_due
            .swap(false, std::sync::atomic::Ordering::Relaxed)
        {
            let _ = self.retire_replaced();
        }
        let _ = self.flush_checksums();
    }

    /// A remembered content checksum of `path` (with options `opts`, canonically written) in
    /// the stack `layers`.
    pub fn checksum_memo(&self, layers: &[String], path: &str, opts: &str) -> Option<String> {
        if layers.is_empty() {
            return None;
        }
        let key = checksum_key(layers, path, opts);
        if let Some((_, sum)) = lock(&self.memory.checksums).get(&key) {
            return Some(sum.clone());
        }
        let value = self.meta.get(Table::Checksums, &key).ok()??;
        // Entries go with their layers' records; a missing directory would be damage.
        layers
            .iter()
            .all(|l| self.layer_dir(l).is_dir())
            .then(|| String::from_utf8(value).ok())?
    }

    /// Remembers a checksum computed on recorded layers; written when the build ends.
    pub fn remember_checksum(&self, layers: &[String], path: &str, opts: &str, sum: &str) {
        if layers.is_empty() {
            return;
        }
        lock(&self.memory.checksums).insert(
            checksum_key(layers, path, opts),
            (layers.to_vec(), sum.to_string()),
        );
    }

    /// Writes remembered checksums in one transaction, each only if all its layers are
    /// recorded (a layer that stays unrecorded is removed after the build).
    fn flush_checksums(&self) -> Result<(), StoreError> {
        let pending: Vec<(String, (Vec<String>, String))> =
            lock(&self.memory.checksums).drain().collect();
        if pending.is_empty() {
            return Ok(());
        }
        self.meta.update(|tx| -> Result<(), StoreError> {
            for (key, (layers, sum)) in &pending {
                let mut recorded = true;
                for l in layers {
                    recorded &= tx.get(Table::Layers, l)?.is_some();
                }
                if recorded {
                    tx.put(Table::Checksums, key, sum.as_bytes())?;
                }
            }
            Ok(())
        })
    }
}
