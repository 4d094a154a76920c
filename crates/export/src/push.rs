//! `type=image`: the image committed to the blob store and, with `push=true`, pushed to every
//! name in `name=REF[,REF…]`. Kiln has no image store (no `docker images`), so without `push`
//! the image is built and stored as blobs only, as buildx's docker-container driver does.

use crate::image::{commit, response};
use crate::{ExportError, flag};
use kiln_oci::Image;
use kiln_registry::{Client, Descriptor, Reference};
use kiln_worker::{Ref, Store};
use std::collections::BTreeMap;

/// Layers pushed at once per image (containerd's default limit is 3; registries cope with 4).
const PUSH_CONCURRENCY: usize = 4;

pub fn export_image(
    store: &Store,
    result: &Ref,
    config: Option<&Image>,
    attrs: &BTreeMap<String, String>,
    registry: &Client,
) -> Result<BTreeMap<String, String>, ExportError> {
    let push = flag(attrs, "push")?.unwrap_or(false);
    let by_digest = flag(attrs, "push-by-digest")?.unwrap_or(false);
    let insecure = flag(attrs, "registry.insecure")?.unwrap_or(false);
    // name-canonical adds `name@digest` to an image store; there is none here to name into.
    flag(attrs, "name-canonical")?;
    // BuildKit's default for type=image without attestations: Docker schema 2 media types.
    let oci = flag(attrs, "oci-mediatypes")?.unwrap_or(false);
    if flag(attrs, "oci-artifact")? == Some(true) && !oci {
        return Err(ExportError::Option {
            key: "oci-artifact".into(),
            value: "true".into(),
            reason: "conflicts with \"oci-mediatypes=false\"".into(),
        });
    }
    let names: Vec<&str> = attrs
        .get("name")
        .map(|n| {
            n.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect()
        })
        .unwrap_or_default();
    let mut targets = Vec::new();
    for n in &names {
        let r = Reference::parse(n).map_err(|e| ExportError::Option {
            key: "name".into(),
            value: n.to_string(),
            reason: e.to_string(),
        })?;
        targets.push((n.to_string(), r));
    }
    if push && targets.is_empty() {
        return Err(ExportError::Option {
            key: "push".into(),
            value: "true".into(),
            reason: "needs name=REF (or -t REF) to push to".into(),
        });
    }
    let committed = commit(store, result, config, attrs, oci)?;
    // The pusher reads blobs from the store: the config joins the layers there.
    store.blobs.put_bytes(&committed.config_bytes)?;
    if push {
        let blobs: Vec<Descriptor> = std::iter::once(committed.config.clone())
            .chain(committed.layers.iter().cloned())
            .collect();
        let run = |name: &str, target: &Reference| -> Result<(), ExportError> {
            if insecure {
                registry.allow_insecure(&target.registry);
            }
            let fut = registry.push_image(
                target,
                &blobs,
                &committed.manifest.media_type,
                &committed.manifest_bytes,
                &store.blobs,
                PUSH_CONCURRENCY,
                by_digest,
            );
            let out = match tokio::runtime::Handle::try_current() {
                Ok(h) => h.block_on(fut),
                Err(_) => tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| ExportError::Other(format!("starting a runtime: {e}")))?
                    .block_on(fut),
            };
            out.map(|_| ()).map_err(|source| ExportError::Push {
                name: name.to_string(),
                source: Box::new(source),
            })
        };
        for (name, target) in &targets {
            run(name, target)?;
        }
    }
    Ok(response(&committed, attrs))
}
