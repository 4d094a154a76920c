//! `type=oci`: layer blobs (computed once per layer and kept), the image config with
//! `rootfs.diff_ids` and history reconciled as BuildKit does, the manifest, and the layout tar.

use crate::{ExportDest, ExportError, Output};
use kiln_oci::layout::BlobSource;
use kiln_oci::{Descriptor, History, Image, Index, Manifest, media_types};
use kiln_worker::store::{LayerBlob, LayerRecord};
use kiln_worker::{Ref, Store};
use std::collections::BTreeMap;

const EXPORTER_COMMENT: &str = "buildkit.exporter.image.v0";

/// An image written into the blob store: config, layers and manifest, all present.
pub(crate) struct Committed {
    pub manifest: Descriptor,
    pub manifest_bytes: Vec<u8>,
    pub config: Descriptor,
    pub config_bytes: Vec<u8>,
    pub layers: Vec<Descriptor>,
}

/// Builds the config and manifest for `result` (layer blobs are computed once and kept; the
/// config and manifest stay in memory: they change with every build's creation time, and a
/// tarball or a push needs no stored copy). `oci_types` picks OCI media types; otherwise Docker
/// schema 2 (BuildKit's default for type=image).
pub(crate) fn commit(
    store: &Store,
    result: &Ref,
    config: Option<&Image>,
    attrs: &BTreeMap<String, String>,
    oci_types: bool,
) -> Result<Committed, ExportError> {
    let blobs = layer_blobs(store, result)?;
    let created = now_rfc3339();
    let mut image = config.cloned().unwrap_or_else(default_image);
    image.rootfs.kind = "layers".into();
    image.rootfs.diff_ids = blobs.iter().map(|b| b.diff_id.clone()).collect();
    image.history = normalize_history(std::mem::take(&mut image.history), blobs.len(), &created);
    if image.created.is_none() {
        image.created = Some(created.clone());
    }
    let config_bytes = serde_json::to_vec(&image).map_err(|e| ExportError::Other(e.to_string()))?;
    let config_digest = kiln_oci::sha256_digest(&config_bytes);
    let config_desc = Descriptor {
        media_type: if oci_types {
            media_types::OCI_CONFIG
        } else {
            media_types::DOCKER_CONFIG
        }
        .to_string(),
        digest: config_digest,
        size: config_bytes.len() as u64,
        ..Default::default()
    };
    let layers: Vec<Descriptor> = blobs
        .iter()
        .map(|b| Descriptor {
            media_type: if oci_types {
                oci_layer_type(&b.media_type)
            } else {
                docker_layer_type(&b.media_type)
            },
            digest: b.digest.clone(),
            size: b.size,
            ..Default::default()
        })
        .collect();
    let mut manifest = Manifest::new_oci(config_desc.clone(), layers.clone());
    if !oci_types {
        manifest.media_type = media_types::DOCKER_MANIFEST.into();
    }
    let manifest_bytes =
        serde_json::to_vec(&manifest).map_err(|e| ExportError::Other(e.to_string()))?;
    let manifest_digest = kiln_oci::sha256_digest(&manifest_bytes);
    let mut manifest_desc = Descriptor {
        media_type: manifest.media_type.clone(),
        digest: manifest_digest,
        size: manifest_bytes.len() as u64,
        ..Default::default()
    };
    manifest_desc
        .annotations
        .insert(kiln_oci::descriptor::ANNOTATION_CREATED.into(), created);
    if let Some(name) = attrs.get("name").filter(|n| !n.is_empty()) {
        manifest_desc
            .annotations
            .extend(kiln_oci::name_annotations(name));
    }
    Ok(Committed {
        manifest: manifest_desc,
        manifest_bytes,
        config: config_desc,
        config_bytes,
        layers,
    })
}

/// BuildKit's exporter response: digests, and the descriptor as base64 of its JSON.
pub(crate) fn response(
    committed: &Committed,
    attrs: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    use base64::Engine as _;
    let mut response = BTreeMap::new();
    response.insert(
        "containerimage.digest".into(),
        committed.manifest.digest.clone(),
    );
    response.insert(
        "containerimage.config.digest".into(),
        committed.config.digest.clone(),
    );
    let json = serde_json::to_vec(&committed.manifest).unwrap_or_default();
    response.insert(
        "containerimage.descriptor".into(),
        base64::engine::general_purpose::STANDARD.encode(json),
    );
    if let Some(name) = attrs.get("name").filter(|n| !n.is_empty()) {
        response.insert("image.name".into(), name.clone());
    }
    response
}

pub fn export_oci(
    store: &Store,
    result: &Ref,
    config: Option<&Image>,
    dest: ExportDest,
    attrs: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ExportError> {
    let oci_types = crate::flag(attrs, "oci-mediatypes")?.unwrap_or(true);
    let committed = commit(store, result, config, attrs, oci_types)?;
    let index = Index::new_oci(vec![committed.manifest.clone()]);
    let mut paths = Vec::with_capacity(committed.layers.len());
    for l in &committed.layers {
        paths.push((l.digest.clone(), store.blobs.path(&l.digest)?));
    }
    let sources: Vec<(String, BlobSource<'_>)> = [
        (
            committed.config.digest.clone(),
            BlobSource::Bytes(&committed.config_bytes),
        ),
        (
            committed.manifest.digest.clone(),
            BlobSource::Bytes(&committed.manifest_bytes),
        ),
    ]
    .into_iter()
    .chain(paths.iter().map(|(d, p)| (d.clone(), BlobSource::File(p))))
    .collect();
    let mut out = Output::open(&dest)?;
    kiln_oci::layout::write_oci_archive(out.writer(), &index, &sources)
        .map_err(|e| ExportError::Other(format!("writing OCI archive: {e}")))?;
    out.finish()?;
    Ok(response(&committed, attrs))
}

/// Docker schema 2 names for layer blobs (the bytes are the same).
fn docker_layer_type(media_type: &str) -> String {
    match media_type {
        media_types::OCI_LAYER_GZIP => media_types::DOCKER_LAYER_GZIP.to_string(),
        media_types::OCI_LAYER => media_types::DOCKER_LAYER.to_string(),
        other => other.to_string(),
    }
}

/// BuildKit writes OCI media types for type=oci: a pulled Docker layer keeps its bytes and
/// takes the OCI name.
fn oci_layer_type(media_type: &str) -> String {
    match media_type {
        media_types::DOCKER_LAYER_GZIP => media_types::OCI_LAYER_GZIP.to_string(),
        other => other.to_string(),
    }
}

fn default_image() -> Image {
    Image {
        architecture: kiln_llb_arch(),
        os: "linux".into(),
        ..Default::default()
    }
}

fn kiln_llb_arch() -> String {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
    .to_string()
}

/// The layer blob of every layer of `result`, compressing (once) the layers that have none.
fn layer_blobs(store: &Store, result: &Ref) -> Result<Vec<LayerBlob>, ExportError> {
    let mut out = Vec::with_capacity(result.layers.len());
    for id in result.layers.iter() {
        let record = store.layer_record(id)?;
        if let Some(blob) = record.blob.filter(|b| store.blobs.has(&b.digest)) {
            out.push(blob);
            continue;
        }
        let tmp = store.tmp_dir().join(format!("layer-{id}.tar.gz"));
        let file = std::fs::File::create(&tmp).map_err(|source| ExportError::Write {
            path: tmp.display().to_string(),
            source,
        })?;
        let blob = kiln_oci::compress_layer(&store.layer_dir(id), std::io::BufWriter::new(file))
            .map_err(|source| ExportError::Layer {
                layer: id.clone(),
                source,
            })?;
        let (digest, size) = store.blobs.put_file_computed(&tmp)?;
        let _ = std::fs::remove_file(&tmp);
        let blob = LayerBlob {
            digest,
            diff_id: blob.diff_id,
            size,
            media_type: blob.media_type,
        };
        store.set_layer_record(
            id,
            &LayerRecord {
                blob: Some(blob.clone()),
            },
        )?;
        out.push(blob);
    }
    Ok(out)
}

/// Makes history agree with the layers, as BuildKit's exporter does: too many non-empty entries
/// become empty from the bottom up; missing entries are added; entries get creation times.
fn normalize_history(mut history: Vec<History>, layers: usize, created: &str) -> Vec<History> {
    let non_empty = history.iter().filter(|h| !h.empty_layer).count();
    if non_empty > layers {
        let mut seen = 0;
        for h in history.iter_mut() {
            if seen >= layers {
                h.empty_layer = true;
            }
            if !h.empty_layer {
                seen += 1;
            }
        }
    }
    for _ in non_empty.min(layers)..layers {
        history.push(History {
            created: Some(created.to_string()),
            created_by: None,
            comment: Some(EXPORTER_COMMENT.into()),
            ..Default::default()
        });
    }
    for h in history.iter_mut() {
        if h.created.is_none() {
            h.created = Some(created.to_string());
        }
    }
    history
}

/// The current time in RFC 3339 (UTC), as Go's time.Time marshals it.
fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    rfc3339(secs)
}

fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (h, m, s) = (rem / 3600, (rem % 3600) / 60, rem % 60);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if mo <= 2 { y + 1 } else { y };
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn history_is_reconciled_with_layers() {
        let h = |empty| History {
            empty_layer: empty,
            ..Default::default()
        };
        let out = normalize_history(vec![h(false), h(true)], 3, "t");
        assert_eq!(out.len(), 4);
        assert_eq!(out[3].comment.as_deref(), Some(EXPORTER_COMMENT));
        let out = normalize_history(vec![h(false), h(false), h(false)], 2, "t");
        assert!(out[2].empty_layer);
        assert!(out.iter().all(|h| h.created.is_some()));
    }
}
