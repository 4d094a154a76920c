//! Views of refs as directories: read-only for reading inputs, writable (a new layer on top)
//! for steps that change the filesystem. Mountpoints come from the snapshotter, which names
//! them after this process so a later start can sweep what a killed one left mounted.

use crate::store::{NewLayer, Ref, Store};
use kiln_snapshot::Mount;
use std::path::PathBuf;

/// A ref visible as a directory until dropped.
pub struct View {
    pub path: PathBuf,
    _mount: Option<Mount>,
    _empty: Option<tempfile_dir::EmptyDir>,
}

mod tempfile_dir {
    use std::path::PathBuf;

    /// An empty directory standing for `scratch`, removed on drop.
    pub struct EmptyDir(pub PathBuf);

    impl Drop for EmptyDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
}

/// Lower dirs of a ref for overlay: top-most first.
fn lowers(store: &Store, r: &Ref) -> Vec<PathBuf> {
    r.layers.iter().rev().map(|l| store.layer_dir(l)).collect()
}

/// Mounts `r` read-only. A single layer is its own directory; no mount is needed.
pub fn read_only(store: &Store, r: &Ref) -> Result<View, String> {
    match r.layers.len() {
        0 => {
            let path = store.snapshots.mountpoint().map_err(|e| e.to_string())?;
            Ok(View {
                path: path.clone(),
                _mount: None,
                _empty: Some(tempfile_dir::EmptyDir(path)),
            })
        }
        1 => Ok(View {
            path: store.layer_dir(&r.layers[0]),
            _mount: None,
            _empty: None,
        }),
        _ => {
            let mount = store
                .snapshots
                .mount(&lowers(store, r), None)
                .map_err(|e| e.to_string())?;
            Ok(View {
                path: mount.target().to_path_buf(),
                _mount: Some(mount),
                _empty: None,
            })
        }
    }
}

/// A new layer on top of `base`, mounted writable. The layer's directory holds the changes.
pub struct Writable {
    pub path: PathBuf,
    pub layer: NewLayer,
    pub base: Ref,
    mount: Option<Mount>,
}

impl Writable {
    pub fn new(store: &Store, base: &Ref) -> Result<Writable, String> {
        let layer = store.new_layer().map_err(|e| e.to_string())?;
        if base.layers.is_empty() {
            // Nothing below: the layer directory itself is the filesystem.
            return Ok(Writable {
                path: layer.dir.clone(),
                layer,
                base: base.clone(),
                mount: None,
            });
        }
        let mount = store
            .snapshots
            .mount(&lowers(store, base), Some(&layer))
            .map_err(|e| e.to_string())?;
        Ok(Writable {
            path: mount.target().to_path_buf(),
            layer,
            base: base.clone(),
            mount: Some(mount),
        })
    }

    /// Unmounts and removes the new layer: a step's writes that nobody keeps.
    pub fn discard(self, store: &Store) -> Result<(), String> {
        if let Some(m) = self.mount {
            m.unmount().map_err(|e| e.to_string())?;
        }
        store.discard_layer(&self.layer);
        Ok(())
    }

    /// Unmounts and returns the ref of the result: the base plus the new layer.
    pub fn finish(self, store: &Store) -> Result<Ref, String> {
        if let Some(m) = self.mount {
            m.unmount().map_err(|e| e.to_string())?;
        }
        store.finish_layer(&self.layer);
        Ok(self.base.with_layer(&self.layer.id))
    }
}
