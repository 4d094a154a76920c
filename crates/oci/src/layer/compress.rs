//! Layer blobs: gzip while hashing the tar (diff_id) and the blob (digest) in one pass.
//! Decompression by magic number is in [`crate::compression`].

use super::LayerError;
use super::write::{LayerStats, write_layer};
use crate::digest::HashingWriter;
use crate::media_types;
use flate2::Compression;
use std::io::{self, Write};
use std::path::Path;

/// A compressed layer blob and the digests an image needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerBlob {
    /// sha256 of the uncompressed tar (`rootfs.diff_ids`).
    pub diff_id: String,
    /// sha256 of the compressed blob (the manifest's layer digest).
    pub digest: String,
    /// Size of the compressed blob.
    pub size: u64,
    pub media_type: String,
    pub stats: LayerStats,
}

/// Writes `upper` as a gzip-compressed OCI layer to `out`.
pub fn compress_layer(upper: &Path, out: impl Write) -> Result<LayerBlob, LayerError> {
    let write_err = |source: io::Error| LayerError::Write {
        path: upper.to_path_buf(),
        source,
    };
    let blob = HashingWriter::new(out);
    // Gzip header with mtime 0 and no name, so the blob depends on the tar only; compressed on
    // every core (pargz.rs), one gzip member as BuildKit writes.
    let gz = super::pargz::ParGzWriter::new(blob, Compression::default());
    let mut tar = HashingWriter::new(gz);
    let stats = write_layer(upper, &mut tar)?;
    let (gz, diff_id, _) = tar.finish();
    let blob = gz.finish().map_err(write_err)?;
    let (mut out, digest, size) = blob.finish();
    out.flush().map_err(write_err)?;
    Ok(LayerBlob {
        diff_id,
        digest,
        size,
        media_type: media_types::OCI_LAYER_GZIP.to_string(),
        stats,
    })
}
