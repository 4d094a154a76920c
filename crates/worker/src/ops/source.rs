//! SourceOp: images from registries and the client's local directories (OCI layouts are in
//! `oci_layout.rs`).

use crate::store::{LayerBlob, LayerRecord, LocalRecord, Ref, Store};
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
        if config.rootfs.diff_ids.len() < resolved.layers.len() {
            return Err(format!(
                "image {}: config lists fewer diff_ids than the manifest has layers",
                self.reference
            )
            .into());
        }
        // Each distinct blob once, several at a time (download and unpack overlap); the ref
        // lists them in the manifest's order.
        let mut unique: Vec<(kiln_registry::Descriptor, String)> = Vec::new();
        for (desc, diff_id) in resolved.layers.iter().zip(&config.rootfs.diff_ids) {
            if !unique.iter().any(|(d, _)| d.digest == desc.digest) {
                unique.push((desc.clone(), diff_id.clone()));
            }
        }
        let permits = tokio::sync::Semaphore::new(LAYER_CONCURRENCY);
        let ids = futures::future::try_join_all(unique.iter().map(|(desc, diff_id)| {
            let (permits, reference) = (&permits, &reference);
            async move {
                let _permit = permits.acquire().await.map_err(|e| e.to_string())?;
                self.layer(reference, desc, diff_id, ctx).await
            }
        }))
        .await?;
        let layers = resolved
            .layers
            .iter()
            .map(|desc| {
                let i = unique.iter().position(|(d, _)| d.digest == desc.digest);
                ids[i.unwrap_or_default()].clone()
            })
            .collect();
        Ok(vec![Ref {
            layers: Arc::new(layers),
        }])
    }
}

/// How many layers of one image download and unpack at once.
const LAYER_CONCURRENCY: usize = 4;

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
        // Never a cache hit: whatever reads the context keys on the content it reads (COPY's
        // checksums), so a changed context is a changed key there. The transfer itself is
        // incremental (see `execute`).
        Ok(format!(
            "local:{}:{:016x}",
            self.name,
            rand::random::<u64>()
        ))
    }

    fn cacheable(&self) -> bool {
        false
    }

    async fn execute(&self, _: &Inputs<'_, Ref>, ctx: &ExecContext) -> Result<Vec<Ref>, OpError> {
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
        let name = self.name.clone();
        let (r, message) = tokio::task::spawn_blocking(move || -> Result<_, OpError> {
            let id = LocalIdentity::new(&name, &dir.path, &excludes, &includes, &follow);
            let filter = crate::context::filter(&excludes, &includes, follow)?;
            transfer(&store, &name, &dir.path, &id, &filter)
        })
        .await??;
        ctx.progress
            .send(&ctx.vertex, "", EventKind::Info { message });
        Ok(vec![r])
    }
}

/// Who a local source is across builds: its name, the client directory and the filters.
/// `origin` leaves the filters out: transfers of the same directory with other filters may
/// share unchanged files.
struct LocalIdentity {
    origin: String,
    key: String,
}

impl LocalIdentity {
    fn new(
        name: &str,
        dir: &std::path::Path,
        excludes: &[String],
        includes: &[String],
        follow: &[String],
    ) -> Self {
        use sha2::{Digest, Sha256};
        use std::os::unix::ffi::OsStrExt;
        // A directory that does not resolve fails in the transfer, as it always did.
        let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let mut h = Sha256::new();
        h.update(b"kiln-local-1\0");
        h.update(name.as_bytes());
        h.update(b"\0");
        h.update(dir.as_os_str().as_bytes());
        let origin = hex::encode(h.finalize());
        let filters = serde_json::to_vec(&(excludes, includes, follow)).expect("lists serialise");
        let mut h = Sha256::new();
        h.update(origin.as_bytes());
        h.update(b"\0");
        h.update(&filters);
        LocalIdentity {
            origin,
            key: hex::encode(h.finalize()),
        }
    }
}

/// Transfers a client directory into a layer, reusing the previous transfer of the identity:
/// the same layer when nothing changed, else a new layer whose unchanged files are hard links
/// to the previous one's. Returns the ref and a line for progress.
fn transfer(
    store: &Store,
    name: &str,
    src: &std::path::Path,
    id: &LocalIdentity,
    filter: &kiln_fileop::ContextFilter,
) -> Result<(Ref, String), OpError> {
    let lock = store.local_lock(&id.key);
    let _held = lock.lock().unwrap_or_else(|p| p.into_inner());
    let previous = store.local_previous(&id.key, &id.origin)?;
    if let Some((p, true)) = &previous
        && kiln_fileop::context_unchanged(src, filter, &store.manifest_path(&p.layer), &p.manifest)?
    {
        let message = format!("transferring {name}: unchanged, reusing the previous transfer");
        return Ok((Ref::scratch().with_layer(&p.layer), message));
    }
    // Files are taken from the previous copy only through a manifest known to be whole.
    let previous = previous
        .filter(|(p, _)| kiln_fileop::manifest_valid(&store.manifest_path(&p.layer), &p.manifest));
    let layer = store.new_layer()?;
    let manifest = store.manifest_path(&layer.id);
    let prev_dir = previous.as_ref().map(|(p, _)| store.layer_dir(&p.layer));
    let prev_manifest = previous
        .as_ref()
        .map(|(p, _)| store.manifest_path(&p.layer));
    let prev = prev_dir
        .as_deref()
        .zip(prev_manifest.as_deref())
        .map(|(dir, manifest)| kiln_fileop::Previous { dir, manifest });
    let (stats, digest) =
        kiln_fileop::sync_context_incremental(src, &layer.dir, filter, prev, &manifest)?;
    store.finish_layer(&layer);
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    store.record_local(
        &id.key,
        &LocalRecord {
            origin: id.origin.clone(),
            layer: layer.id.clone(),
            manifest: digest,
            created,
            retired: Vec::new(),
        },
    )?;
    let message = format!(
        "transferring {name}: {} bytes copied, {} of {} files unchanged",
        stats.bytes, stats.reused, stats.files
    );
    Ok((Ref::scratch().with_layer(&layer.id), message))
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
