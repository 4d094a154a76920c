//! Views of refs as directories: read-only for reading inputs, writable (a new layer on top)
//! for steps that change the filesystem.

use crate::store::{NewLayer, Ref, Store};
use kiln_snapshot::Mount;
use std::path::PathBuf;

/// A ref visible as a directory until dropped.
pub struct View {
    pub path: PathBuf,
    _mount: Option<Mount>,
    _tmp: Option<PathBuf>,
}

impl Drop for View {
    fn drop(&mut self) {
        if let Some(t) = &self._tmp {
            let _ = std::fs::remove_dir(t);
        }
    }
}

fn mountpoint(store: &Store) -> std::io::Result<PathBuf> {
    let path = store
        .mounts_dir()
        .join(format!("{:012x}", rand::random::<u64>() >> 16));
    std::fs::create_dir(&path)?;
    Ok(path)
}

/// Lower dirs of a ref for overlay: top-most first.
fn lowers(store: &Store, r: &Ref) -> Vec<PathBuf> {
    r.layers.iter().rev().map(|l| store.layer_dir(l)).collect()
}

/// Mounts `r` read-only. A single layer is its own directory; no mount is needed.
pub fn read_only(store: &Store, r: &Ref) -> Result<View, String> {
    match r.layers.len() {
        0 => {
            let path = mountpoint(store).map_err(|e| format!("creating empty view: {e}"))?;
            Ok(View {
                path: path.clone(),
                _mount: None,
                _tmp: Some(path),
            })
        }
        1 => Ok(View {
            path: store.layer_dir(&r.layers[0]),
            _mount: None,
            _tmp: None,
        }),
        _ => {
            let target = mountpoint(store).map_err(|e| format!("creating mountpoint: {e}"))?;
            let mount = kiln_snapshot::mount(&lowers(store, r), None, &target)
                .map_err(|e| e.to_string())?;
            Ok(View {
                path: target,
                _mount: Some(mount),
                _tmp: None,
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
        let target = mountpoint(store).map_err(|e| format!("creating mountpoint: {e}"))?;
        let mount = kiln_snapshot::mount(
            &lowers(store, base),
            Some((&layer.dir, &layer.work)),
            &target,
        )
        .map_err(|e| e.to_string())?;
        Ok(Writable {
            path: target,
            layer,
            base: base.clone(),
            mount: Some(mount),
        })
    }

    /// Unmounts and returns the ref of the result: the base plus the new layer.
    pub fn finish(self, store: &Store) -> Result<Ref, String> {
        if let Some(m) = self.mount {
            m.unmount().map_err(|e| e.to_string())?;
            let _ = std::fs::remove_dir(&self.path);
        }
        store.finish_layer(&self.layer);
        Ok(self.base.with_layer(&self.layer.id))
    }
}
