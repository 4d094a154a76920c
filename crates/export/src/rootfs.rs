//! The root filesystem of a result, as a tar stream or a directory.

use crate::{ExportDest, ExportError, Output};
use kiln_worker::mounts::read_only;
use kiln_worker::{Ref, Store};
use std::path::Path;

pub fn export_tar(store: &Store, result: &Ref, dest: ExportDest) -> Result<(), ExportError> {
    let view = read_only(store, result).map_err(ExportError::Other)?;
    let mut out = Output::open(&dest)?;
    kiln_oci::write_layer(&view.path, out.writer()).map_err(|source| ExportError::Layer {
        layer: "root filesystem".into(),
        source,
    })?;
    out.finish()
}

/// Copies the result into `dir` by streaming it through the layer writer and applier, which
/// keeps every entry type and attribute and cannot write outside `dir`.
pub fn export_local(store: &Store, result: &Ref, dir: &Path) -> Result<(), ExportError> {
    let view = read_only(store, result).map_err(ExportError::Other)?;
    std::fs::create_dir_all(dir).map_err(|source| ExportError::Write {
        path: dir.display().to_string(),
        source,
    })?;
    let (reader, writer) = std::io::pipe().map_err(|source| ExportError::Write {
        path: "pipe".into(),
        source,
    })?;
    let src = view.path.clone();
    let producer = std::thread::spawn(move || {
        let mut writer = writer;
        kiln_oci::write_layer(&src, &mut writer)
    });
    let applied = kiln_oci::apply_layer(reader, dir);
    let written = producer
        .join()
        .map_err(|_| ExportError::Other("layer writer thread panicked".into()))?;
    written.map_err(|source| ExportError::Layer {
        layer: "root filesystem".into(),
        source,
    })?;
    applied.map_err(|source| ExportError::Layer {
        layer: dir.display().to_string(),
        source,
    })?;
    Ok(())
}
