//! Pushing: blobs the registry has are skipped (HEAD), blobs pulled from another repository of
//! the same registry are mounted, the rest are uploaded (monolithic when small, chunked when
//! large) with the digest checked on both sides; the manifest goes last.

use crate::RegistryError;
use crate::client::{Client, check_status};
use crate::hosts::Endpoint;
use crate::reference::Reference;
use crate::transport::{Answer, Req, scope};
use crate::types::Descriptor;
use futures::{StreamExt as _, TryStreamExt as _};
use kiln_content::blobs::{BlobStore, sha256_digest};
use reqwest::header::{CONTENT_LENGTH, LOCATION};
use reqwest::{Method, StatusCode};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt as _;

/// Blobs up to this size go in one PUT; larger ones in PATCH chunks of this size.
const CHUNK: u64 = 16 * 1024 * 1024;

/// What happened to one blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobPush {
    /// The registry had it (HEAD answered 200).
    Present,
    /// Mounted from another repository of the same registry.
    Mounted,
    Uploaded,
}

/// The outcome of [`Client::push_image`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// The manifest's digest.
    pub digest: String,
    pub present: usize,
    pub mounted: usize,
    pub uploaded: usize,
}

impl Client {
    /// Pushes `blobs` (config and layers, from `store`) at most `concurrency` at a time, then
    /// the manifest: by tag (default `latest`), or by digest only when `by_digest`.
    #[allow(clippy::too_many_arguments)]
    pub async fn push_image(
        &self,
        target: &Reference,
        blobs: &[Descriptor],
        manifest_media_type: &str,
        manifest: &[u8],
        store: &BlobStore,
        concurrency: usize,
        by_digest: bool,
    ) -> Result<PushReport, RegistryError> {
        let outcomes: Vec<BlobPush> = futures::stream::iter(blobs)
            .map(|d| self.push_blob(target, d, store))
            .buffer_unordered(concurrency.max(1))
            .try_collect()
            .await?;
        let digest = self
            .push_manifest(target, manifest_media_type, manifest, by_digest)
            .await?;
        let count = |k| outcomes.iter().filter(|o| **o == k).count();
        Ok(PushReport {
            digest,
            present: count(BlobPush::Present),
            mounted: count(BlobPush::Mounted),
            uploaded: count(BlobPush::Uploaded),
        })
    }

    /// Makes sure the registry has `desc` in `target`'s repository.
    pub async fn push_blob(
        &self,
        target: &Reference,
        desc: &Descriptor,
        store: &BlobStore,
    ) -> Result<BlobPush, RegistryError> {
        let endpoints = self.endpoints(target, false)?;
        let push_scope = scope(target, "pull,push");
        let path = format!("{}/blobs/{}", target.repository, desc.digest);
        let head = self
            .send_path(
                target,
                &endpoints,
                &path,
                &push_scope,
                &Req::new(Method::HEAD),
            )
            .await?;
        let ep = endpoint_of(&endpoints, &head.url);
        let len = head
            .resp
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        match head.resp.status() {
            // A size that disagrees means a different blob under our digest: upload ours.
            s if s.is_success() && len.is_none_or(|l| l == desc.size) => {
                return Ok(BlobPush::Present);
            }
            s if s.is_success() || s == StatusCode::NOT_FOUND => {}
            _ => {
                return Err(check_status(target, &head.url, head.resp)
                    .await
                    .err()
                    .unwrap_or_else(|| push_err(target, &head.url, "unexpected answer to HEAD")));
            }
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.upload(target, ep, desc, store, &push_scope).await {
                Err(e) if attempt < self.attempts && worth_retrying(&e) => {
                    tokio::time::sleep(self.backoff * 2u32.saturating_pow(attempt - 1)).await;
                }
                other => return other,
            }
        }
    }

    /// Mount if a sibling repository had it, else start an upload session and upload.
    async fn upload(
        &self,
        target: &Reference,
        ep: &Endpoint,
        desc: &Descriptor,
        store: &BlobStore,
        push_scope: &str,
    ) -> Result<BlobPush, RegistryError> {
        let uploads = format!("{}/{}/blobs/uploads/", ep.base, target.repository);
        let same_registry = format!("{}/", target.registry);
        let from = store.sources(&desc.digest).into_iter().find_map(|s| {
            let repo = s.strip_prefix(&same_registry)?.to_string();
            (repo != target.repository && valid_repo(&repo)).then_some(repo)
        });
        let mut session = None;
        if let Some(from) = from {
            let url = format!("{uploads}?mount={}&from={from}", desc.digest);
            let scope = format!("{push_scope} repository:{from}:pull");
            let a = self
                .send_url(target, &ep.http, &url, &scope, &Req::new(Method::POST))
                .await?;
            match a.resp.status() {
                StatusCode::CREATED => return Ok(BlobPush::Mounted),
                // The registry could not mount and opened an upload session instead.
                StatusCode::ACCEPTED => session = Some(location(target, &a)?),
                _ => {} // not allowed to read `from`, say: upload it
            }
        }
        let mut loc = match session {
            Some(l) => l,
            None => {
                let a = self
                    .send_url(
                        target,
                        &ep.http,
                        &uploads,
                        push_scope,
                        &Req::new(Method::POST),
                    )
                    .await?;
                if a.resp.status() != StatusCode::ACCEPTED {
                    let url = a.url.clone();
                    return Err(unexpected(target, &url, a).await);
                }
                location(target, &a)?
            }
        };
        let blob = store
            .path(&desc.digest)
            .map_err(|e| local(target, desc, &e))?;
        let mut file = tokio::fs::File::open(&blob)
            .await
            .map_err(|e| local(target, desc, &e))?;
        let mut hasher = Sha256::new();
        let mut offset = 0u64;
        let monolithic = desc.size <= CHUNK;
        let mut last_chunk = bytes::Bytes::new();
        while offset < desc.size || (offset == 0 && monolithic) {
            let n = (desc.size - offset).min(CHUNK) as usize;
            let mut buf = vec![0u8; n];
            file.read_exact(&mut buf)
                .await
                .map_err(|e| local(target, desc, &e))?;
            hasher.update(&buf);
            let chunk = bytes::Bytes::from(buf);
            if monolithic {
                last_chunk = chunk;
                break;
            }
            let mut req = Req::new(Method::PATCH);
            req.retry = false;
            req.content_type = Some("application/octet-stream");
            req.headers.push((
                "content-range",
                format!("{offset}-{}", offset + n as u64 - 1),
            ));
            req.body = Some(chunk);
            let a = self
                .send_url(target, &ep.http, &loc, push_scope, &req)
                .await?;
            if a.resp.status() != StatusCode::ACCEPTED {
                let url = a.url.clone();
                return Err(unexpected(target, &url, a).await);
            }
            loc = location(target, &a)?;
            offset += n as u64;
        }
        // Never send a blob whose bytes are not what the manifest names.
        let actual = format!("sha256:{}", hex::encode(hasher.finalize()));
        if actual != desc.digest {
            return Err(local(
                target,
                desc,
                &format!("content hashes to {actual}: the local store is damaged"),
            ));
        }
        let mut url =
            reqwest::Url::parse(&loc).map_err(|e| push_err(target, &loc, &e.to_string()))?;
        url.query_pairs_mut().append_pair("digest", &desc.digest);
        let mut req = Req::new(Method::PUT);
        req.retry = false;
        req.content_type = Some("application/octet-stream");
        req.body = Some(last_chunk);
        let a = self
            .send_url(target, &ep.http, url.as_str(), push_scope, &req)
            .await?;
        if a.resp.status() != StatusCode::CREATED {
            let url = a.url.clone();
            return Err(unexpected(target, &url, a).await);
        }
        check_digest_header(target, &a, &desc.digest)?;
        Ok(BlobPush::Uploaded)
    }

    /// PUTs a manifest; returns its digest.
    pub async fn push_manifest(
        &self,
        target: &Reference,
        media_type: &str,
        bytes: &[u8],
        by_digest: bool,
    ) -> Result<String, RegistryError> {
        let digest = sha256_digest(bytes);
        let id = match (&target.tag, by_digest) {
            (Some(t), false) => t.clone(),
            (None, false) if target.digest.is_none() => "latest".to_string(),
            _ => digest.clone(),
        };
        if let Some(pinned) = target.digest.as_ref().filter(|d| **d != digest) {
            return Err(push_err(
                target,
                &target.to_string(),
                &format!("the reference pins {pinned}, but the image built is {digest}"),
            ));
        }
        let endpoints = self.endpoints(target, false)?;
        let mut req = Req::new(Method::PUT);
        req.content_type = Some(media_type);
        req.body = Some(bytes::Bytes::copy_from_slice(bytes));
        let path = format!("{}/manifests/{id}", target.repository);
        let a = self
            .send_path(target, &endpoints, &path, &scope(target, "pull,push"), &req)
            .await?;
        if !a.resp.status().is_success() {
            let url = a.url.clone();
            return Err(unexpected(target, &url, a).await);
        }
        check_digest_header(target, &a, &digest)?;
        Ok(digest)
    }
}

fn endpoint_of<'a>(endpoints: &'a [Endpoint], url: &str) -> &'a Endpoint {
    endpoints
        .iter()
        .find(|e| url.starts_with(&format!("{}/", e.base)))
        .unwrap_or(&endpoints[0])
}

/// The upload session's URL, which may be relative to the request's.
fn location(target: &Reference, a: &Answer) -> Result<String, RegistryError> {
    let raw = a
        .resp
        .headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| push_err(target, &a.url, "the answer has no Location for the upload"))?;
    let base = reqwest::Url::parse(&a.url).map_err(|e| push_err(target, &a.url, &e.to_string()))?;
    let joined = base
        .join(raw)
        .map_err(|e| push_err(target, &a.url, &format!("bad upload Location: {e}")))?;
    if !matches!(joined.scheme(), "http" | "https") {
        return Err(push_err(target, &a.url, "upload Location is not http(s)"));
    }
    Ok(joined.to_string())
}

fn check_digest_header(target: &Reference, a: &Answer, digest: &str) -> Result<(), RegistryError> {
    let header = a
        .resp
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok());
    match header {
        Some(h) if h.trim() != digest => Err(RegistryError::DigestMismatch {
            reference: target.to_string(),
            url: a.url.clone(),
            expected: digest.to_string(),
            actual: h.trim().to_string(),
        }),
        _ => Ok(()),
    }
}

async fn unexpected(target: &Reference, url: &str, a: Answer) -> RegistryError {
    let status = a.resp.status();
    match check_status(target, url, a.resp).await {
        Err(e) => e,
        Ok(_) => push_err(target, url, &format!("unexpected answer {status}")),
    }
}

fn push_err(target: &Reference, url: &str, reason: &str) -> RegistryError {
    RegistryError::Push {
        reference: target.to_string(),
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

fn local(target: &Reference, desc: &Descriptor, e: &dyn std::fmt::Display) -> RegistryError {
    RegistryError::LocalBlob {
        reference: target.to_string(),
        digest: desc.digest.clone(),
        reason: e.to_string(),
    }
}

fn worth_retrying(e: &RegistryError) -> bool {
    match e {
        RegistryError::Http { source, .. } => crate::client::transient(source),
        RegistryError::Status { status, .. } => *status >= 500 || *status == 429,
        _ => false,
    }
}

/// A repository path as the distribution spec allows (so it is safe in a query).
fn valid_repo(repo: &str) -> bool {
    !repo.is_empty()
        && repo.len() <= 255
        && repo
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
}
