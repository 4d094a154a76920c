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
/// keeps every entry type and attribute and cannot write outside `dir`. Like BuildKit's local
/// exporter, what the result holds replaces what `dir` has at the same paths; other files stay.
pub fn export_local(store: &Store, result: &Ref, dir: &Path) -> Result<(), ExportError> {
    let werr = |path: &Path| {
        let path = path.display().to_string();
        move |source| ExportError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(werr(dir))?;
    let empty = std::fs::read_dir(dir).map_err(werr(dir))?.next().is_none();
    if empty {
        return unpack_into(store, result, dir);
    }
    // The applier wants an empty directory: unpack beside `dir` (same file system, so the
    // entries can be renamed into place), then merge.
    let parent = dir.parent().unwrap_or(Path::new("/"));
    let staging = parent.join(format!(
        ".{}.kiln-{}",
        dir.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        std::process::id()
    ));
    std::fs::create_dir(&staging).map_err(werr(&staging))?;
    let result = unpack_into(store, result, &staging).and_then(|()| merge_into(&staging, dir));
    let _ = std::fs::remove_dir_all(&staging);
    result
}

fn unpack_into(store: &Store, result: &Ref, dir: &Path) -> Result<(), ExportError> {
    let view = read_only(store, result).map_err(ExportError::Other)?;
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

/// Moves every entry of `from` into `to`: directories merge, anything else replaces what is
/// there. Symlinks in `to` are replaced, never followed.
fn merge_into(from: &Path, to: &Path) -> Result<(), ExportError> {
    let werr = |path: &Path, source| ExportError::Write {
        path: path.display().to_string(),
        source,
    };
    for entry in std::fs::read_dir(from).map_err(|e| werr(from, e))? {
        let entry = entry.map_err(|e| werr(from, e))?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let src_is_dir = entry.file_type().map_err(|e| werr(&src, e))?.is_dir();
        match std::fs::symlink_metadata(&dst) {
            Ok(meta) if src_is_dir && meta.is_dir() => {
                merge_into(&src, &dst)?;
                let perms = std::fs::symlink_metadata(&src)
                    .map_err(|e| werr(&src, e))?
                    .permissions();
                std::fs::set_permissions(&dst, perms).map_err(|e| werr(&dst, e))?;
                continue;
            }
            Ok(meta) if meta.is_dir() => {
                std::fs::remove_dir_all(&dst).map_err(|e| werr(&dst, e))?;
            }
            Ok(_) => std::fs::remove_file(&dst).map_err(|e| werr(&dst, e))?,
            Err(_) => {}
        }
        std::fs::rename(&src, &dst).map_err(|e| werr(&dst, e))?;
    }
    Ok(())
}
