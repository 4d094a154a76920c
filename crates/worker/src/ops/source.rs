//! SourceOp: images from registries and the client's local directories (OCI layouts are in
//! `oci_layout.rs`).

use crate::store::{LayerBlob, LayerRecord, Ref, Store};
use crate::{LocalDir, Worker};
use async_trait::async_trait;
use kiln_proto::pb;
use kiln_solver::{EventKind, ExecContext, Inputs, OpError, Operation};
use std::collections::BTreeMap;
use std::sync::Arc;

pub struct ImageSource {
    pub worker: Arc<Worker>,
    pub reference: String,
    pub platform: pb::Platform,
}

impl ImageSource {
    fn parsed(&self) -> Result<kiln_registry::Reference, OpError> {
        Ok(kiln_registry::Reference::parse(&self.reference)?)
    }

    fn platform(&self) -> kiln_registry::Platform {
        kiln_registry::Platform {
            os: self.platform.os.clone(),
            architecture: self.platform.architecture.clone(),
            variant: Some(self.platform.variant.clone()).filter(|v| !v.is_empty()),
        }
    }
}

#[async_trait]
impl Operation<Ref> for ImageSource {
    async fn cache_key(&self, _: &Inputs<'_, Ref>) -> Result<String, OpError> {
        let reference = self.parsed()?;
        // A pinned digest needs no network; a tag is resolved on every build.
        let digest = match &reference.digest {
            Some(d) => d.clone(),
            None => {
                self.worker
                    .registry
                    .resolve(&reference, &self.platform())
                    .await?
                    .digest
            }
        };
        Ok(format!(
            "docker-image:{digest}:{}/{}/{}",
            self.platform.os, self.platform.architecture, self.platform.variant
        ))
    }

    async fn execute(&self, _: &Inputs<'_, Ref>, ctx: &ExecContext) -> Result<Vec<Ref>, OpError> {
        let reference = self.parsed()?;
        let resolved = self
            .worker
            .registry
            .resolve(&reference, &self.platform())
            .await?;
        let config: kiln_oci::Image = serde_json::from_slice(&resolved.config)
            .map_err(|e| format!("image config of {}: {e}", self.reference))?;
        let mut layers = Vec::new();
        for (i, desc) in resolved.layers.iter().enumerate() {
            let diff_id = config.rootfs.diff_ids.get(i).cloned().ok_or_else(|| {
                format!(
                    "image {}: config lists fewer diff_ids than the manifest has layers",
                    self.reference
                )
            })?;
            layers.push(self.layer(&reference, desc, &diff_id, ctx).await?);
        }
        Ok(vec![Ref {
            layers: Arc::new(layers),
        }])
    }
}

impl ImageSource {
    /// The unpacked layer for a blob, pulled and unpacked once, shared by every image using it.
    async fn layer(
        &self,
        reference: &kiln_registry::Reference,
        desc: &kiln_registry::Descriptor,
        diff_id: &str,
        ctx: &ExecContext,
    ) -> Result<String, OpError> {
        let worker = &self.worker;
        unpacked_layer(worker, desc, diff_id, ctx, || async move {
            Ok(worker
                .registry
                .fetch_blob(reference, desc, &worker.store.blobs)
                .await?)
        })
        .await
    }
}

/// The unpacked layer for a layer blob: unpacked once per blob digest and shared by every image
/// (registry or OCI layout) that has it. `fetch` brings the verified blob into the store's
/// blob area and returns its path; it runs only when the layer is not unpacked yet.
pub(crate) async fn unpacked_layer<F, Fut>(
    worker: &Worker,
    desc: &kiln_oci::Descriptor,
    diff_id: &str,
    ctx: &ExecContext,
    fetch: F,
) -> Result<String, OpError>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<std::path::PathBuf, OpError>>,
{
    let store = &worker.store;
    let key = format!("layer-blob:{}", desc.digest);
    if let Some(id) = store
        .lookup(&key)?
        .and_then(|refs| refs.first().and_then(|r| r.layers.first().cloned()))
    {
        return Ok(id);
    }
    ctx.progress.send(
        &ctx.vertex,
        "",
        EventKind::Info {
            message: format!("pulling {}", desc.digest),
        },
    );
    let blob = fetch().await?;
    let store2 = store.clone();
    let layer = tokio::task::spawn_blocking(move || -> Result<String, OpError> {
        let layer = store2.new_layer()?;
        let file = std::fs::File::open(&blob)?;
        let reader = kiln_oci::layer::decompress(std::io::BufReader::new(file))?;
        kiln_oci::layer::apply_layer(FailMidway::new(reader), &layer.dir)?;
        store2.finish_layer(&layer);
        Ok(layer.id)
    })
    .await??;
    let r = Ref::scratch().with_layer(&layer);
    store.record(&key, &[r])?;
    store.set_layer_record(
        &layer,
        &LayerRecord {
            blob: Some(LayerBlob {
                digest: desc.digest.clone(),
                diff_id: diff_id.to_string(),
                size: desc.size,
                media_type: desc.media_type.clone(),
            }),
        },
    )?;
    Ok(layer)
}

/// `local://NAME`: a directory of the client's, sent as BuildKit's client sends it.
pub struct LocalSource {
    pub worker: Arc<Worker>,
    pub name: String,
    pub dir: Option<LocalDir>,
    pub attrs: BTreeMap<String, String>,
}

fn json_list(attrs: &BTreeMap<String, String>, key: &str) -> Result<Vec<String>, OpError> {
    match attrs.get(key) {
        None => Ok(Vec::new()),
        Some(v) => {
            serde_json::from_str(v).map_err(|e| format!("source attribute {key}: {e}").into())
        }
    }
}

#[async_trait]
impl Operation<Ref> for LocalSource {
    async fn cache_key(&self, _: &Inputs<'_, Ref>) -> Result<String, OpError> {
        // The transfer itself is cheap here and what reads it keys on content, so every build
        // takes a fresh copy (see ARCHITECTURE.md: local sources).
        Ok(format!(
            "local:{}:{:016x}",
            self.name,
            rand::random::<u64>()
        ))
    }

    fn cacheable(&self) -> bool {
        false
    }

    async fn execute(&self, _: &Inputs<'_, Ref>, _: &ExecContext) -> Result<Vec<Ref>, OpError> {
        let dir = self.dir.clone().ok_or_else(|| {
            format!(
                "no local directory named {:?} was given (use --local {}=DIR)",
                self.name, self.name
            )
        })?;
        let excludes = json_list(&self.attrs, "local.excludepatterns")?;
        let includes = json_list(&self.attrs, "local.includepatterns")?;
        let follow = json_list(&self.attrs, "local.followpaths")?;
        let store: Arc<Store> = self.worker.store.clone();
        let r = tokio::task::spawn_blocking(move || -> Result<Ref, OpError> {
            let layer = store.new_layer()?;
            let filter = crate::context::filter(&excludes, &includes, follow)?;
            kiln_fileop::sync_context(&dir.path, &layer.dir, &filter)?;
            store.finish_layer(&layer);
            Ok(Ref::scratch().with_layer(&layer.id))
        })
        .await??;
        Ok(vec![r])
    }
}

/// Crash tests: `KILN_FAILPOINT=layer-apply-mid` aborts once part of a layer is unpacked.
struct FailMidway<R> {
    inner: R,
    read: u64,
    armed: bool,
}

impl<R> FailMidway<R> {
    fn new(inner: R) -> Self {
        let armed = std::env::var_os(kiln_content::blobs::FAILPOINT_ENV)
            .is_some_and(|v| v == "layer-apply-mid");
        FailMidway {
            inner,
            read: 0,
            armed,
        }
    }
}

impl<R: std::io::Read> std::io::Read for FailMidway<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.armed && self.read > 64 * 1024 {
            kiln_content::blobs::failpoint("layer-apply-mid");
        }
        Ok(n)
    }
}
