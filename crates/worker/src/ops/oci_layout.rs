//! `oci-layout://NAME@DIGEST`: an image from an OCI image layout directory of the client's.
//!
//! Where the layout comes from: BuildKit's client serves a content store over its session and
//! the op names it with the `oci.store` attribute (`oci.session` names the session). Kiln's
//! daemonless sessions carry local directories only, so the store id is looked up among the
//! session's local directories: `oci.store=ID` reads the directory given as `--local ID=DIR`
//! (`kiln build --build-context NAME=oci-layout://DIR` registers DIR under a store id of its
//! own). `oci.session` is not needed: one build has one session.
//!
//! The digest may name an index (the platform's manifest is picked) or a manifest. Every
//! JSON blob is size-capped and digest-checked; layer blobs are copied into the store's blob
//! area through a verified ingest, then unpacked once per blob, as registry layers are.

use super::source::unpacked_layer;
use crate::store::Ref;
use crate::{LocalDir, Worker};
use async_trait::async_trait;
use kiln_proto::pb;
use kiln_solver::{ExecContext, Inputs, OpError, Operation};
use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

/// The attribute naming the client's OCI store.
pub const ATTR_STORE: &str = "oci.store";

pub struct OciLayoutSource {
    pub worker: Arc<Worker>,
    /// The identifier after `oci-layout://`: `name@sha256:…`.
    pub reference: String,
    pub attrs: BTreeMap<String, String>,
    pub platform: pb::Platform,
    /// The session's local directory named by `oci.store`, if there is one.
    pub dir: Option<LocalDir>,
}

impl OciLayoutSource {
    fn digest(&self) -> Result<&str, OpError> {
        let digest = self
            .reference
            .rsplit_once('@')
            .map(|(_, d)| d)
            .ok_or_else(|| {
                format!(
                    "oci-layout://{}: the reference has no digest (oci-layout://NAME@sha256:…)",
                    self.reference
                )
            })?;
        if kiln_oci::sha256_hex(digest).is_none() {
            return Err(
                format!("oci-layout://{}: invalid digest {digest:?}", self.reference).into(),
            );
        }
        Ok(digest)
    }

    fn dir(&self) -> Result<PathBuf, OpError> {
        let store = self.attrs.get(ATTR_STORE).ok_or_else(|| {
            format!(
                "oci-layout://{}: no {ATTR_STORE} attribute names the client's OCI store",
                self.reference
            )
        })?;
        let dir = self.dir.as_ref().ok_or_else(|| {
            format!(
                "oci-layout://{}: the session has no OCI store {store:?} (give its layout directory as --local {store}=DIR)",
                self.reference
            )
        })?;
        Ok(dir.path.clone())
    }

    fn platform(&self) -> kiln_oci::Platform {
        kiln_oci::Platform {
            os: self.platform.os.clone(),
            architecture: self.platform.architecture.clone(),
            variant: Some(self.platform.variant.clone()).filter(|v| !v.is_empty()),
            ..Default::default()
        }
    }

    /// Reads the layout (blocking file I/O, off the async workers).
    async fn resolve(&self) -> Result<(PathBuf, kiln_oci::layout::LayoutImage), OpError> {
        let dir = self.dir()?;
        let digest = self.digest()?.to_string();
        let platform = self.platform();
        let reference = self.reference.clone();
        tokio::task::spawn_blocking(move || {
            let image = kiln_oci::layout::resolve_layout_image(&dir, &digest, &platform).map_err(
                |e| -> OpError {
                    format!("oci-layout://{reference} (layout {}): {e}", dir.display()).into()
                },
            )?;
            Ok((dir, image))
        })
        .await?
    }
}

#[async_trait]
impl Operation<Ref> for OciLayoutSource {
    async fn cache_key(&self, _: &Inputs<'_, Ref>) -> Result<String, OpError> {
        // The manifest digest pins the content whatever the store is called.
        let (_, image) = self.resolve().await?;
        Ok(format!(
            "oci-layout:{}:{}/{}/{}",
            image.manifest_digest,
            self.platform.os,
            self.platform.architecture,
            self.platform.variant
        ))
    }

    async fn execute(&self, _: &Inputs<'_, Ref>, ctx: &ExecContext) -> Result<Vec<Ref>, OpError> {
        let (dir, image) = self.resolve().await?;
        let diff_ids = &image.config.rootfs.diff_ids;
        if diff_ids.len() != image.manifest.layers.len() {
            return Err(format!(
                "oci-layout://{}: the config lists {} diff_ids for {} layers",
                self.reference,
                diff_ids.len(),
                image.manifest.layers.len()
            )
            .into());
        }
        let mut layers = Vec::new();
        for (desc, diff_id) in image.manifest.layers.iter().zip(diff_ids) {
            let worker = &self.worker;
            let dir = dir.clone();
            let id = unpacked_layer(worker, desc, diff_id, ctx, || async move {
                let store = worker.store.clone();
                let desc = desc.clone();
                tokio::task::spawn_blocking(move || ingest_blob(&store.blobs, &dir, &desc)).await?
            })
            .await?;
            layers.push(id);
        }
        Ok(vec![Ref {
            layers: Arc::new(layers),
        }])
    }
}

/// Copies a layer blob from the layout into the blob store; the ingest refuses more bytes
/// than the descriptor's size and checks the digest before anything is published.
fn ingest_blob(
    blobs: &kiln_content::blobs::BlobStore,
    dir: &std::path::Path,
    desc: &kiln_oci::Descriptor,
) -> Result<PathBuf, OpError> {
    if blobs.has(&desc.digest) {
        return Ok(blobs.path(&desc.digest)?);
    }
    let path = kiln_oci::layout::blob_path(dir, &desc.digest)?;
    let named = |e: std::io::Error| format!("layer blob {}: {e}", path.display());
    // Only a regular file: a FIFO or device would hang or never end.
    let meta = std::fs::symlink_metadata(&path).map_err(named)?;
    if !meta.is_file() {
        return Err(format!("layer blob {} is not a regular file", path.display()).into());
    }
    let mut file = std::fs::File::open(&path).map_err(named)?;
    let mut ingest = blobs.begin(&desc.digest, Some(desc.size))?;
    std::io::copy(&mut file, &mut ingest).map_err(named)?;
    ingest.flush().map_err(named)?;
    Ok(ingest
        .commit()
        .map_err(|e| format!("layer blob {}: {e}", path.display()))?)
}
