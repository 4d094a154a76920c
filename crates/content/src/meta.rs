//! The metadata database: cache records and layer records in one redb file. Every write is a
//! committed transaction, so a crash leaves either the old or the new state, never a mix.
//! Values are opaque bytes here; the worker owns their meaning.

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};

/// Cache key -> the outputs of the step that has it.
const CACHE: TableDefinition<&str, &[u8]> = TableDefinition::new("cache");
/// Layer (snapshot) id -> what is known about the layer (its blobs once computed).
const LAYERS: TableDefinition<&str, &[u8]> = TableDefinition::new("layers");
/// Local source identity -> its last transfer (layer, manifest digest); see kiln-worker's store.
const LOCALS: TableDefinition<&str, &[u8]> = TableDefinition::new("locals");
/// (layers, path, options) -> content checksum: a layer never changes, so neither does this.
const CHECKSUMS: TableDefinition<&str, &[u8]> = TableDefinition::new("checksums");
/// Schema version and counters.
const INFO: TableDefinition<&str, &[u8]> = TableDefinition::new("info");

/// The schema this build writes; a store from a newer Kiln is refused, not rewritten. Tables
/// added later (`locals`, `checksums`) are created on first write: a store without them reads
/// them as empty, and a Kiln that does not know them leaves them alone.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("opening metadata database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: Box<redb::DatabaseError>,
    },
    #[error("metadata database {path}: {message}")]
    Db { path: PathBuf, message: String },
    #[error(
        "metadata database {path} has schema version {found}; this kiln knows {SCHEMA_VERSION}"
    )]
    Schema { path: PathBuf, found: u32 },
}

pub struct MetaDb {
    db: Database,
    path: PathBuf,
}

/// Which table a record lives in.
#[derive(Debug, Clone, Copy)]
pub enum Table {
    Cache,
    Layers,
    Locals,
    Checksums,
}

impl Table {
    fn def(self) -> TableDefinition<'static, &'static str, &'static [u8]> {
        match self {
            Table::Cache => CACHE,
            Table::Layers => LAYERS,
            Table::Locals => LOCALS,
            Table::Checksums => CHECKSUMS,
        }
    }
}

impl MetaDb {
    pub fn open(path: &Path) -> Result<MetaDb, MetaError> {
        let db = Database::create(path).map_err(|e| MetaError::Open {
            path: path.to_path_buf(),
            source: Box::new(e),
        })?;
        let meta = MetaDb {
            db,
            path: path.to_path_buf(),
        };
        meta.init_schema()?;
        Ok(meta)
    }

    fn err(&self, e: impl std::fmt::Display) -> MetaError {
        MetaError::Db {
            path: self.path.clone(),
            message: e.to_string(),
        }
    }

    fn init_schema(&self) -> Result<(), MetaError> {
        // Most opens find the schema in place: check it without a write transaction, whose
        // commit would cost two fsyncs on every start.
        if let Some(found) = self.schema_version()? {
            if found != SCHEMA_VERSION {
                return Err(MetaError::Schema {
                    path: self.path.clone(),
                    found,
                });
            }
            return Ok(());
        }
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut info = tx.open_table(INFO).map_err(|e| self.err(e))?;
            let found = info.get("schema").map_err(|e| self.err(e))?.map(|v| {
                let b = v.value();
                u32::from_le_bytes(b.try_into().unwrap_or([0xff; 4]))
            });
            match found {
                Some(v) if v != SCHEMA_VERSION => {
                    return Err(MetaError::Schema {
                        path: self.path.clone(),
                        found: v,
                    });
                }
                Some(_) => {}
                None => {
                    info.insert("schema", &SCHEMA_VERSION.to_le_bytes()[..])
                        .map_err(|e| self.err(e))?;
                }
            }
            tx.open_table(CACHE).map_err(|e| self.err(e))?;
            tx.open_table(LAYERS).map_err(|e| self.err(e))?;
            tx.open_table(LOCALS).map_err(|e| self.err(e))?;
            tx.open_table(CHECKSUMS).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    fn schema_version(&self) -> Result<Option<u32>, MetaError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let info = match tx.open_table(INFO) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        let found = info
            .get("schema")
            .map_err(|e| self.err(e))?
            .map(|v| u32::from_le_bytes(v.value().try_into().unwrap_or([0xff; 4])));
        // The data tables are created in the same transaction as the version.
        Ok(found)
    }

    pub fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, MetaError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match tx.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(self.err(e)),
        };
        Ok(t.get(key)
            .map_err(|e| self.err(e))?
            .map(|v| v.value().to_vec()))
    }

    /// Writes several records in one transaction: all of them land, or none.
    pub fn put_all(&self, records: &[(Table, &str, &[u8])]) -> Result<(), MetaError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        for (table, key, value) in records {
            let mut t = tx.open_table(table.def()).map_err(|e| self.err(e))?;
            t.insert(*key, *value).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    pub fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<(), MetaError> {
        self.put_all(&[(table, key, value)])
    }

    pub fn remove(&self, table: Table, keys: &[String]) -> Result<(), MetaError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut t = tx.open_table(table.def()).map_err(|e| self.err(e))?;
            for k in keys {
                t.remove(k.as_str()).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Every record of a table (for start-up checks, du and GC).
    pub fn entries(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let t = match tx.open_table(table.def()) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| self.err(e))? {
            let (k, v) = item.map_err(|e| self.err(e))?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Runs `f` in one write transaction and commits it if `f` succeeds: every write lands, or
    /// none. Reads inside see the transaction's own writes.
    pub fn update<T, E: From<MetaError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        let value = f(&Tx { tx: &tx, db: self })?;
        tx.commit().map_err(|e| self.err(e))?;
        Ok(value)
    }
}

/// A write transaction of [`MetaDb::update`].
pub struct Tx<'a> {
    tx: &'a redb::WriteTransaction,
    db: &'a MetaDb,
}

impl Tx<'_> {
    pub fn get(&self, table: Table, key: &str) -> Result<Option<Vec<u8>>, MetaError> {
        let t = self
            .tx
            .open_table(table.def())
            .map_err(|e| self.db.err(e))?;
        Ok(t.get(key)
            .map_err(|e| self.db.err(e))?
            .map(|v| v.value().to_vec()))
    }

    pub fn put(&self, table: Table, key: &str, value: &[u8]) -> Result<(), MetaError> {
        let mut t = self
            .tx
            .open_table(table.def())
            .map_err(|e| self.db.err(e))?;
        t.insert(key, value).map_err(|e| self.db.err(e))?;
        Ok(())
    }

    pub fn remove(&self, table: Table, key: &str) -> Result<(), MetaError> {
        let mut t = self
            .tx
            .open_table(table.def())
            .map_err(|e| self.db.err(e))?;
        t.remove(key).map_err(|e| self.db.err(e))?;
        Ok(())
    }

    pub fn entries(&self, table: Table) -> Result<Vec<(String, Vec<u8>)>, MetaError> {
        let t = self
            .tx
            .open_table(table.def())
            .map_err(|e| self.db.err(e))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|e| self.db.err(e))? {
            let (k, v) = item.map_err(|e| self.db.err(e))?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_reopen_and_schema_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        {
            let db = MetaDb::open(&path).unwrap();
            db.put_all(&[(Table::Cache, "k", b"v"), (Table::Layers, "l1", b"x")])
                .unwrap();
        }
        let db = MetaDb::open(&path).unwrap();
        assert_eq!(
            db.get(Table::Cache, "k").unwrap().as_deref(),
            Some(&b"v"[..])
        );
        assert_eq!(db.entries(Table::Layers).unwrap().len(), 1);
        db.remove(Table::Cache, &["k".into()]).unwrap();
        assert!(db.get(Table::Cache, "k").unwrap().is_none());
    }

    #[test]
    fn update_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = MetaDb::open(&dir.path().join("meta.redb")).unwrap();
        db.put(Table::Layers, "old", b"x").unwrap();
        let failed: Result<(), MetaError> = db.update(|tx| {
            tx.put(Table::Locals, "id", b"new")?;
            tx.remove(Table::Layers, "old")?;
            assert!(
                tx.get(Table::Layers, "old")?.is_none(),
                "reads see own writes"
            );
            Err(MetaError::Db {
                path: "x".into(),
                message: "abort".into(),
            })
        });
        assert!(failed.is_err());
        assert!(db.get(Table::Locals, "id").unwrap().is_none());
        assert!(db.get(Table::Layers, "old").unwrap().is_some());
        db.update(|tx| -> Result<(), MetaError> {
            tx.put(Table::Locals, "id", b"new")?;
            tx.remove(Table::Layers, "old")
        })
        .unwrap();
        assert_eq!(db.entries(Table::Locals).unwrap().len(), 1);
        assert!(db.get(Table::Layers, "old").unwrap().is_none());
    }

    #[test]
    fn tables_added_later_read_as_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meta.redb");
        // A store made before `locals` and `checksums` existed.
        {
            let db = Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut info = tx.open_table(INFO).unwrap();
                info.insert("schema", &SCHEMA_VERSION.to_le_bytes()[..])
                    .unwrap();
                tx.open_table(CACHE).unwrap();
                tx.open_table(LAYERS).unwrap();
            }
            tx.commit().unwrap();
        }
        let db = MetaDb::open(&path).unwrap();
        assert!(db.get(Table::Locals, "x").unwrap().is_none());
        assert!(db.entries(Table::Checksums).unwrap().is_empty());
        db.put(Table::Checksums, "k", b"v").unwrap();
        assert_eq!(db.entries(Table::Checksums).unwrap().len(), 1);
    }
}
