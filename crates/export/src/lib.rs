//! Exporters: the result of a build written as an OCI image tarball, a local directory, or a
//! tar stream of its root filesystem.

mod image;
mod push;
mod rootfs;

use kiln_worker::{Ref, Store};
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportKind {
    /// `type=oci`: an OCI image layout as a tar.
    Oci,
    /// `type=tar`: the root filesystem as a tar.
    Tar,
    /// `type=local`: the root filesystem copied into a directory.
    Local,
    /// `type=image` (and `type=registry`, which is image with `push=true`): an image in the
    /// store, pushed to a registry when `push=true`.
    Image,
}

#[derive(Debug, Clone)]
pub enum ExportDest {
    File(PathBuf),
    Stdout,
    Dir(PathBuf),
    /// Nothing on the client's side (type=image).
    None,
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("layer {layer}: {source}")]
    Layer {
        layer: String,
        #[source]
        source: kiln_oci::LayerError,
    },
    #[error(transparent)]
    Store(#[from] kiln_worker::StoreError),
    #[error(transparent)]
    Blob(#[from] kiln_content::blobs::BlobError),
    #[error("{kind:?} export needs {needs}")]
    Dest {
        kind: ExportKind,
        needs: &'static str,
    },
    #[error("{0}")]
    Other(String),
    #[error("exporter option {key}={value:?}: {reason}")]
    Option {
        key: String,
        value: String,
        reason: String,
    },
    #[error("failed to push {name}: {source}")]
    Push {
        name: String,
        #[source]
        source: Box<kiln_registry::RegistryError>,
    },
}

/// A boolean exporter option as BuildKit reads it: absent is None, an empty value is true.
pub(crate) fn flag(
    attrs: &BTreeMap<String, String>,
    key: &str,
) -> Result<Option<bool>, ExportError> {
    match attrs.get(key).map(String::as_str) {
        None => Ok(None),
        Some("" | "true" | "1" | "t" | "T" | "TRUE" | "True") => Ok(Some(true)),
        Some("false" | "0" | "f" | "F" | "FALSE" | "False") => Ok(Some(false)),
        Some(v) => Err(ExportError::Option {
            key: key.to_string(),
            value: v.to_string(),
            reason: "expected true or false".into(),
        }),
    }
}

/// Writes `result` as `kind` to `dest`; returns the exporter response (digests and names).
/// Pushes go through `registry`, driven from this (blocking) thread on the current runtime.
pub fn export(
    store: &Store,
    result: &Ref,
    config: Option<&kiln_oci::Image>,
    kind: &ExportKind,
    dest: ExportDest,
    attrs: &BTreeMap<String, String>,
    registry: &kiln_registry::Client,
) -> Result<BTreeMap<String, String>, ExportError> {
    check_compression(attrs)?;
    match kind {
        ExportKind::Image => push::export_image(store, result, config, attrs, registry),
        ExportKind::Oci => image::export_oci(store, result, config, dest, attrs),
        ExportKind::Tar => rootfs::export_tar(store, result, dest).map(|_| BTreeMap::new()),
        ExportKind::Local => match dest {
            ExportDest::Dir(dir) => {
                rootfs::export_local(store, result, &dir).map(|_| BTreeMap::new())
            }
            _ => Err(ExportError::Dest {
                kind: ExportKind::Local,
                needs: "a destination directory (dest=DIR)",
            }),
        },
    }
}

/// Layers are gzip; other compressions fail loudly rather than being silently ignored.
fn check_compression(attrs: &BTreeMap<String, String>) -> Result<(), ExportError> {
    match attrs.get("compression").map(String::as_str) {
        None | Some("") | Some("gzip") => Ok(()),
        Some(other) => Err(ExportError::Option {
            key: "compression".into(),
            value: other.into(),
            reason: "not supported yet (layers are gzip)".into(),
        }),
    }
}

/// Opens the destination of a stream export; a file is written under a temporary name and
/// renamed when complete, so a failed export never leaves a truncated file behind.
pub(crate) struct Output {
    file: Option<(tempfile_path::Temp, PathBuf)>,
    writer: Box<dyn std::io::Write>,
}

mod tempfile_path {
    use std::path::PathBuf;

    /// A path removed on drop unless kept.
    pub struct Temp(pub PathBuf, pub bool);

    impl Drop for Temp {
        fn drop(&mut self) {
            if !self.1 {
                let _ = std::fs::remove_file(&self.0);
            }
        }
    }
}

impl Output {
    pub(crate) fn open(dest: &ExportDest) -> Result<Output, ExportError> {
        match dest {
            ExportDest::Stdout => Ok(Output {
                file: None,
                writer: Box::new(std::io::BufWriter::new(std::io::stdout())),
            }),
            ExportDest::None => Err(ExportError::Dest {
                kind: ExportKind::Oci,
                needs: "a destination file (dest=FILE)",
            }),
            ExportDest::File(path) | ExportDest::Dir(path) => {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let tmp = path.with_file_name(format!(".{name}.kiln-{:08x}", std::process::id()));
                let f = std::fs::File::create(&tmp).map_err(|source| ExportError::Write {
                    path: tmp.display().to_string(),
                    source,
                })?;
                Ok(Output {
                    file: Some((tempfile_path::Temp(tmp, false), path.clone())),
                    writer: Box::new(std::io::BufWriter::new(f)),
                })
            }
        }
    }

    pub(crate) fn writer(&mut self) -> &mut dyn std::io::Write {
        &mut self.writer
    }

    pub(crate) fn finish(mut self) -> Result<(), ExportError> {
        let werr = |source| ExportError::Write {
            path: "output".into(),
            source,
        };
        self.writer.flush().map_err(werr)?;
        drop(std::mem::replace(
            &mut self.writer,
            Box::new(std::io::sink()),
        ));
        if let Some((mut tmp, path)) = self.file.take() {
            kiln_content::blobs::failpoint("export-before-rename");
            std::fs::rename(&tmp.0, &path).map_err(|source| ExportError::Write {
                path: path.display().to_string(),
                source,
            })?;
            tmp.1 = true;
        }
        Ok(())
    }
}
