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
    #[error("{digest}: {message}")]
    Select { digest: String, message: String },
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

/// One platform's image in a layout: what an `oci-layout://` source unpacks.
#[derive(Debug, Clone)]
pub struct LayoutImage {
    pub manifest_digest: String,
    pub manifest: Manifest,
    pub config: Image,
}

/// Resolves `digest` (an index or a manifest, as BuildKit's OCI layout resolver takes it; it
/// need not be listed in `index.json`) to the image for `os/arch[/variant]`. Every JSON blob
/// read is size-capped and checked against its digest.
pub fn resolve_layout_image(
    dir: &Path,
    digest: &str,
    platform: &crate::Platform,
) -> Result<LayoutImage, Error> {
    let path = blob_path(dir, digest)?;
    let bytes = read_limited(&path, MAX_JSON_BLOB)?;
    if crate::digest::sha256_digest(&bytes) != digest {
        return Err(Error::Mismatch {
            digest: digest.to_string(),
        });
    }
    let probe: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|source| Error::Json {
            path: path.clone(),
            source,
        })?;
    let desc = Descriptor {
        media_type: probe
            .get("mediaType")
            .and_then(|m| m.as_str())
            .unwrap_or_default()
            .to_string(),
        digest: digest.to_string(),
        size: bytes.len() as u64,
        ..Descriptor::default()
    };
    let select = |message: String| Error::Select {
        digest: digest.to_string(),
        message,
    };
    let want = platform_string(platform);
    if probe.get("manifests").is_some() {
        let index: Index =
            serde_json::from_slice(&bytes).map_err(|source| Error::Json { path, source })?;
        let mut available = Vec::new();
        // Exact matches first, then entries without a platform (their config decides).
        let mut candidates: Vec<(u8, &Descriptor)> = Vec::new();
        for m in &index.manifests {
            let attestation = m
                .annotations
                .get("vnd.docker.reference.type")
                .is_some_and(|t| t == "attestation-manifest");
            if attestation || m.media_type.contains("index") {
                continue;
            }
            match &m.platform {
                Some(p) => {
                    available.push(platform_string(p));
                    if platform_matches(platform, p) {
                        candidates.push((0, m));
                    }
                }
                None => candidates.push((1, m)),
            }
        }
        candidates.sort_by_key(|c| c.0);
        for (_, m) in candidates {
            let manifest = read_manifest(dir, m)?;
            let config = read_image_config(dir, &manifest.config)?;
            if config_matches(platform, &config) {
                return Ok(LayoutImage {
                    manifest_digest: m.digest.clone(),
                    manifest,
                    config,
                });
            }
        }
        return Err(select(format!(
            "no image for platform {want} in the index (it has: {})",
            if available.is_empty() {
                "none".to_string()
            } else {
                available.join(", ")
            }
        )));
    }
    let manifest = read_manifest(dir, &desc)?;
    let config = read_image_config(dir, &manifest.config)?;
    if !config_matches(platform, &config) {
        return Err(select(format!(
            "the image is for {}/{}, not {want}",
            config.os, config.architecture
        )));
    }
    Ok(LayoutImage {
        manifest_digest: digest.to_string(),
        manifest,
        config,
    })
}

fn platform_string(p: &crate::Platform) -> String {
    match p.variant.as_deref() {
        Some(v) if !v.is_empty() => format!("{}/{}/{v}", p.os, p.architecture),
        _ => format!("{}/{}", p.os, p.architecture),
    }
}

/// containerd's spellings: `x86_64` is `amd64`, `aarch64` is `arm64` (whose `v8` is implied).
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    match (arch, variant) {
        ("x86_64" | "x86-64", _) => ("amd64".into(), String::new()),
        ("aarch64" | "arm64", "v8" | "8") => ("arm64".into(), String::new()),
        ("aarch64", v) => ("arm64".into(), v.into()),
        ("arm", "") => ("arm".into(), "v7".into()),
        (a, v) => (a.into(), v.into()),
    }
}

/// Whether an image for `have` runs where `want` is asked for: same os and architecture, and
/// the same variant when both name one.
fn platform_matches(want: &crate::Platform, have: &crate::Platform) -> bool {
    let (wa, wv) = normalize_arch(&want.architecture, want.variant.as_deref().unwrap_or(""));
    let (ha, hv) = normalize_arch(&have.architecture, have.variant.as_deref().unwrap_or(""));
    want.os == have.os && wa == ha && (wv.is_empty() || hv.is_empty() || wv == hv)
}

/// A config that names no platform fits any.
fn config_matches(want: &crate::Platform, config: &Image) -> bool {
    if config.os.is_empty() || config.architecture.is_empty() {
        return true;
    }
    let have = crate::Platform {
        os: config.os.clone(),
        architecture: config.architecture.clone(),
        variant: config.variant.clone(),
        ..Default::default()
    };
    platform_matches(want, &have)
}

#[cfg(test)]
mod resolve_tests {
    use super::*;

    fn put(dir: &Path, bytes: &[u8], media_type: &str) -> Descriptor {
        let d = Descriptor::of_bytes(media_type, bytes);
        std::fs::write(blob_path(dir, &d.digest).unwrap(), bytes).unwrap();
        d
    }

    fn image(dir: &Path, arch: &str) -> Descriptor {
        let config = format!(
            r#"{{"architecture":"{arch}","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        let c = put(dir, config.as_bytes(), media_types::OCI_CONFIG);
        let m = serde_json::to_vec(&Manifest::new_oci(c, Vec::new())).unwrap();
        put(dir, &m, media_types::OCI_MANIFEST)
    }

    fn platform(arch: &str) -> crate::Platform {
        crate::Platform {
            os: "linux".into(),
            architecture: arch.into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_index_gives_the_platform_asked_for() {
        let dir = std::env::temp_dir().join(format!("kiln-layout-{:x}", std::process::id()));
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        let mut amd = image(&dir, "amd64");
        amd.platform = Some(platform("amd64"));
        let mut arm = image(&dir, "arm64");
        arm.platform = Some(platform("aarch64"));
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{},{}]}}"#,
            media_types::OCI_INDEX,
            serde_json::to_string(&amd).unwrap(),
            serde_json::to_string(&arm).unwrap()
        );
        let idx = put(&dir, index.as_bytes(), media_types::OCI_INDEX);
        let got = resolve_layout_image(&dir, &idx.digest, &platform("arm64")).unwrap();
        assert_eq!(got.manifest_digest, arm.digest);
        assert_eq!(got.config.architecture, "arm64");
        let err = resolve_layout_image(&dir, &idx.digest, &platform("s390x")).unwrap_err();
        assert!(err.to_string().contains("amd64"), "{err}");
        // A manifest named directly must be for the platform asked for.
        assert!(resolve_layout_image(&dir, &amd.digest, &platform("amd64")).is_ok());
        let err = resolve_layout_image(&dir, &amd.digest, &platform("arm64")).unwrap_err();
        assert!(err.to_string().contains("not linux/arm64"), "{err}");
        // Blobs that do not match their digest are refused.
        std::fs::write(blob_path(&dir, &arm.digest).unwrap(), b"{}").unwrap();
        let err = resolve_layout_image(&dir, &idx.digest, &platform("arm64")).unwrap_err();
        assert!(matches!(err, Error::Mismatch { .. }), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
