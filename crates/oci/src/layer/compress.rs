//! Layer blobs: gzip while hashing the tar (diff_id) and the blob (digest) in one pass, and
//! decompression by magic number.

use super::LayerError;
use super::write::{LayerStats, write_layer};
use crate::digest::HashingWriter;
use crate::media_types;
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use std::io::{self, BufRead, BufReader, Read, Write};
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
    // Gzip header with mtime 0 and no name, so the blob depends on the tar only.
    let gz = flate2::GzBuilder::new().write(blob, Compression::default());
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

/// A layer stream with its compression removed.
pub enum Decompressed<R: Read> {
    Plain(BufReader<R>),
    Gzip(Box<MultiGzDecoder<BufReader<R>>>),
}

impl<R: Read> Read for Decompressed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decompressed::Plain(r) => r.read(buf),
            Decompressed::Gzip(r) => r.read(buf),
        }
    }
}

/// Wraps a layer blob so that reading yields the tar, whatever the compression (by magic
/// number, as containerd does: the media type can lie).
pub fn decompress<R: Read>(r: R) -> Result<Decompressed<R>, LayerError> {
    let mut br = BufReader::with_capacity(64 * 1024, r);
    let head = br.fill_buf().map_err(LayerError::Read)?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Decompressed::Gzip(Box::new(MultiGzDecoder::new(br))))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(LayerError::Compression { format: "zstd" })
    } else if head.starts_with(b"BZh") {
        Err(LayerError::Compression { format: "bzip2" })
    } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Err(LayerError::Compression { format: "xz" })
    } else {
        Ok(Decompressed::Plain(br))
    }
}
