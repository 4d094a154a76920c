//! OCI image layouts: writing one as a tar stream (what `buildctl --output type=oci` writes) and
//! reading one from a directory (for `oci-layout://` sources).

use crate::descriptor::{Descriptor, Index, Manifest};
use crate::digest::{HashingWriter, sha256_hex};
use crate::image::Image;
use crate::layer::tar_write::{TarWriter, WHead, WKind};
use crate::media_types;
use serde::de::DeserializeOwned;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Largest JSON blob (index, manifest, config) we read into memory.
pub const MAX_JSON_BLOB: u64 = 8 << 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid digest {digest:?}")]
    InvalidDigest { digest: String },
    #[error("reading blob {digest}")]
    Blob {
        digest: String,
        #[source]
        source: io::Error,
    },
    #[error("blob {digest} does not match its digest or size")]
    Mismatch { digest: String },
    #[error("blob {digest} is {size} bytes, more than the {max} allowed for json")]
    TooLarge { digest: String, size: u64, max: u64 },
    #[error("writing oci archive entry {name}")]
    Write {
        name: String,
        #[source]
        source: io::Error,
    },
    #[error("reading {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("parsing {path}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} is not an oci layout (no imageLayoutVersion)")]
    NotLayout { path: PathBuf },
}

/// Where a blob's bytes come from.
#[derive(Debug, Clone, Copy)]
pub enum BlobSource<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// The `oci-layout` file's content.
pub fn oci_layout_json() -> Vec<u8> {
    format!(
        r#"{{"imageLayoutVersion":"{}"}}"#,
        media_types::OCI_LAYOUT_VERSION
    )
    .into_bytes()
}

/// Writes an OCI image layout as a tar to `out`, entries sorted by name as containerd's
/// exporter does: `blobs/`, `blobs/sha256/`, each blob (0444), `index.json` (0644),
/// `oci-layout` (0444). Every blob is checked against its digest while it is copied.
/// Duplicate digests are written once.
pub fn write_oci_archive(
    out: impl Write,
    index: &Index,
    blobs: &[(String, BlobSource<'_>)],
) -> Result<(), Error> {
    let mut sorted: Vec<(&str, &BlobSource<'_>)> = Vec::with_capacity(blobs.len());
    for (digest, src) in blobs {
        let hex = sha256_hex(digest).ok_or_else(|| Error::InvalidDigest {
            digest: digest.clone(),
        })?;
        sorted.push((hex, src));
    }
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    sorted.dedup_by(|a, b| a.0 == b.0);

    let mut tw = TarWriter::new(out);
    let werr = |name: &str| {
        let name = name.to_string();
        move |source| Error::Write { name, source }
    };
    for dir in ["blobs/", "blobs/sha256/"] {
        let mut h = WHead::new(dir.as_bytes().to_vec(), WKind::Dir);
        h.mode = 0o755;
        tw.header(&h).map_err(werr(dir))?;
    }
    for (hex, src) in sorted {
        let name = format!("blobs/sha256/{hex}");
        let digest = format!("sha256:{hex}");
        write_blob(&mut tw, &name, &digest, src)?;
    }
    let index_json = serde_json::to_vec(index).map_err(|e| Error::Write {
        name: "index.json".into(),
        source: e.into(),
    })?;
    write_file(&mut tw, "index.json", 0o644, &index_json).map_err(werr("index.json"))?;
    write_file(&mut tw, "oci-layout", 0o444, &oci_layout_json()).map_err(werr("oci-layout"))?;
    tw.finish().map_err(werr("end of archive"))?;
    Ok(())
}

fn write_file<W: Write>(
    tw: &mut TarWriter<W>,
    name: &str,
    mode: u32,
    data: &[u8],
) -> io::Result<()> {
    let mut h = WHead::new(name.as_bytes().to_vec(), WKind::Regular);
    h.mode = mode;
    h.size = data.len() as u64;
    tw.header(&h)?;
    tw.data(data)?;
    tw.pad(h.size)
}

fn write_blob<W: Write>(
    tw: &mut TarWriter<W>,
    name: &str,
    digest: &str,
    src: &BlobSource<'_>,
) -> Result<(), Error> {
    let blob_err = |source| Error::Blob {
        digest: digest.to_string(),
        source,
    };
    let werr = |source| Error::Write {
        name: name.to_string(),
        source,
    };
    let (size, mut reader): (u64, Box<dyn Read + '_>) = match *src {
        BlobSource::Bytes(b) => (b.len() as u64, Box::new(b)),
        BlobSource::File(p) => {
            let f = std::fs::File::open(p).map_err(blob_err)?;
            let size = f.metadata().map_err(blob_err)?.len();
            (size, Box::new(f.take(size)))
        }
    };
    let mut h = WHead::new(name.as_bytes().to_vec(), WKind::Regular);
    h.mode = 0o444;
    h.size = size;
    tw.header(&h).map_err(werr)?;
    let mut hw = HashingWriter::new(TarData(tw));
    io::copy(&mut reader, &mut hw).map_err(blob_err)?;
    let (TarData(tw), got, n) = hw.finish();
    if n != size || got != digest {
        return Err(Error::Mismatch {
            digest: digest.to_string(),
        });
    }
    tw.pad(size).map_err(werr)
}

/// Lets `io::copy` write entry data straight into the tar.
struct TarData<'a, W>(&'a mut TarWriter<W>);

impl<W: Write> Write for TarData<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.data(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `<dir>/blobs/sha256/<hex>` for a well-formed digest.
pub fn blob_path(dir: &Path, digest: &str) -> Result<PathBuf, Error> {
    let hex = sha256_hex(digest).ok_or_else(|| Error::InvalidDigest {
        digest: digest.to_string(),
    })?;
    Ok(dir.join("blobs").join("sha256").join(hex))
}

fn read_limited(path: &Path, max: u64) -> Result<Vec<u8>, Error> {
    let rerr = |source| Error::Read {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(rerr)?;
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf).map_err(rerr)?;
    if buf.len() as u64 > max {
        return Err(Error::TooLarge {
            digest: path.display().to_string(),
            size: buf.len() as u64,
            max,
        });
    }
    Ok(buf)
}

/// Reads `<dir>/index.json` after checking `<dir>/oci-layout`.
pub fn read_layout_index(dir: &Path) -> Result<Index, Error> {
    let layout_path = dir.join("oci-layout");
    let layout = read_limited(&layout_path, 4096)?;
    let v: serde_json::Value = serde_json::from_slice(&layout).map_err(|source| Error::Json {
        path: layout_path.clone(),
        source,
    })?;
    if !v.get("imageLayoutVersion").is_some_and(|v| v.is_string()) {
        return Err(Error::NotLayout {
            path: dir.to_path_buf(),
        });
    }
    let index_path = dir.join("index.json");
    let bytes = read_limited(&index_path, MAX_JSON_BLOB)?;
    serde_json::from_slice(&bytes).map_err(|source| Error::Json {
        path: index_path,
        source,
    })
}

/// Reads the JSON blob `desc` from the layout at `dir`, checking its size and digest.
pub fn read_json_blob<T: DeserializeOwned>(dir: &Path, desc: &Descriptor) -> Result<T, Error> {
    if desc.size > MAX_JSON_BLOB {
        return Err(Error::TooLarge {
            digest: desc.digest.clone(),
            size: desc.size,
            max: MAX_JSON_BLOB,
        });
    }
    let path = blob_path(dir, &desc.digest)?;
    let bytes = read_limited(&path, MAX_JSON_BLOB)?;
    if bytes.len() as u64 != desc.size || crate::digest::sha256_digest(&bytes) != desc.digest {
        return Err(Error::Mismatch {
            digest: desc.digest.clone(),
        });
    }
    serde_json::from_slice(&bytes).map_err(|source| Error::Json { path, source })
}

pub fn read_manifest(dir: &Path, desc: &Descriptor) -> Result<Manifest, Error> {
    read_json_blob(dir, desc)
}

pub fn read_index(dir: &Path, desc: &Descriptor) -> Result<Index, Error> {
    read_json_blob(dir, desc)
}

pub fn read_image_config(dir: &Path, desc: &Descriptor) -> Result<Image, Error> {
    read_json_blob(dir, desc)
}
