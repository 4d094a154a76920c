//! The HTTP side: manifests and blobs over the distribution API, anonymous bearer auth, retries
//! and verified streaming into the blob store.

use crate::RegistryError;
use crate::auth::{Challenge, TokenCache};
use crate::creds::CredentialStore;
use crate::hosts::{self, Config, HostConfig};
use crate::reference::Reference;
use crate::transport::{Req, scope};
use crate::types::{self, Descriptor, Index, MANIFEST_ACCEPT, Manifest, Platform, Probe};
use futures::{StreamExt as _, TryStreamExt as _};
use kiln_content::blobs::{BlobError, BlobStore, digest_hex, sha256_digest};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

/// Largest manifest or index accepted (containerd's limit is about the same).
pub const MAX_MANIFEST_SIZE: u64 = 4 * 1024 * 1024;
/// Largest image config accepted; configs are held in memory.
pub const MAX_CONFIG_SIZE: u64 = 32 * 1024 * 1024;
const MAX_ERROR_BODY: u64 = 1024;

/// The outcome of [`Client::resolve`]: everything needed to pin and unpack one platform's image.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The reference as asked for (tag kept, no digest added).
    pub reference: Reference,
    /// What the tag points to: the index digest for a multi-platform image, else the manifest
    /// digest. This is what BuildKit pins in source ops (`name:tag@digest`).
    pub digest: String,
    pub manifest_digest: String,
    /// Verified manifest bytes, exactly as served.
    pub manifest: Vec<u8>,
    pub manifest_media_type: String,
    /// Verified index bytes when the reference pointed to an index.
    pub index: Option<Vec<u8>>,
    pub config_descriptor: Descriptor,
    /// Verified config blob bytes.
    pub config: Vec<u8>,
    pub layers: Vec<Descriptor>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Manifest,
    Index,
}

/// A verified manifest-or-index document.
struct Fetched {
    bytes: Vec<u8>,
    digest: String,
    kind: Kind,
    media_type: String,
    url: String,
}

#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    pub(crate) config: Config,
    clients: Mutex<HashMap<(String, bool), reqwest::Client>>,
    insecure: Mutex<HashSet<String>>,
    pub(crate) creds: CredentialStore,
    pub(crate) tokens: TokenCache,
    /// What each host asked for last (basic or a bearer realm), to authenticate up front.
    pub(crate) host_auth: Mutex<HashMap<String, Challenge>>,
    pub(crate) attempts: u32,
    pub(crate) backoff: Duration,
    /// Resolutions by pinned digest and platform: what a digest names never changes, so the
    /// frontend's resolution serves the pull step's again without a request.
    pinned: Mutex<HashMap<String, Resolved>>,
}

/// How many pinned resolutions are remembered before the memo starts over.
const PINNED_MEMO: usize = 256;

fn pinned_key(registry: &str, repository: &str, digest: &str, platform: &Platform) -> String {
    format!(
        "{registry}/{repository}@{digest}|{}/{}/{}",
        platform.os,
        platform.architecture,
        platform.variant.as_deref().unwrap_or("")
    )
}

impl Client {
    pub fn new() -> Result<Self, RegistryError> {
        // reqwest is built without a bundled provider; ring is the project's pick. A second
        // install (another Client, another crate) is expected and harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = hosts::http_client("", None, false)?;
        Ok(Self {
            http,
            config: Config::default(),
            clients: Mutex::new(HashMap::new()),
            insecure: Mutex::new(HashSet::new()),
            creds: CredentialStore::from_env(),
            tokens: TokenCache::default(),
            host_auth: Mutex::new(HashMap::new()),
            pinned: Mutex::new(HashMap::new()),
            attempts: 4,
            backoff: Duration::from_millis(200),
        })
    }

    /// Uses `config`'s `[registry."host"]` settings (mirrors, http, insecure, ca, keypair).
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self.clients = Mutex::new(HashMap::new());
        self
    }

    /// Takes credentials from `creds` instead of `$DOCKER_CONFIG`.
    pub fn with_credentials(mut self, creds: CredentialStore) -> Self {
        self.creds = creds;
        self
    }

    /// Sets how many times a GET is tried on 5xx, 429 or connection errors, and the first wait
    /// (doubled each time).
    pub fn with_retries(mut self, attempts: u32, first_backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.backoff = first_backoff;
        self
    }

    /// Resolves `reference` to one platform's manifest, its config and its layer descriptors.
    pub async fn resolve(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Resolved, RegistryError> {
        if let Some(d) = &reference.digest {
            let key = pinned_key(&reference.registry, &reference.repository, d, platform);
            let memo = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(r) = memo.get(&key) {
                let mut r = r.clone();
                r.reference = reference.clone();
                return Ok(r);
            }
        }
        let resolved = self.resolve_remote(reference, platform).await?;
        let key = pinned_key(
            &reference.registry,
            &reference.repository,
            &resolved.digest,
            platform,
        );
        let mut memo = self.pinned.lock().unwrap_or_else(|p| p.into_inner());
        if memo.len() >= PINNED_MEMO {
            memo.clear();
        }
        memo.insert(key, resolved.clone());
        Ok(resolved)
    }

    async fn resolve_remote(
        &self,
        reference: &Reference,
        platform: &Platform,
    ) -> Result<Resolved, RegistryError> {
        let id = match (&reference.digest, &reference.tag) {
            (Some(d), _) => d.clone(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        };
        let top = self
            .fetch_manifest(reference, &id, reference.digest.as_deref(), None)
            .await?;
        let (manifest, index) = match top.kind {
            Kind::Manifest => (top, None),
            Kind::Index => {
                let chosen = select_platform(reference, &top, platform)?;
                let child = self
                    .fetch_manifest(
                        reference,
                        &chosen.digest,
                        Some(&chosen.digest),
                        Some(chosen.size),
                    )
                    .await?;
                if child.kind != Kind::Manifest {
                    return Err(invalid(
                        reference,
                        &child.url,
                        "index entry is not an image manifest",
                    ));
                }
                (child, Some(top))
            }
        };
        let parsed: Manifest = serde_json::from_slice(&manifest.bytes)
            .map_err(|e| invalid(reference, &manifest.url, &format!("parsing manifest: {e}")))?;
        for d in std::iter::once(&parsed.config).chain(&parsed.layers) {
            if digest_hex(&d.digest).is_err() {
                return Err(invalid(
                    reference,
                    &manifest.url,
                    &format!("unsupported descriptor digest {:?}", d.digest),
                ));
            }
        }
        let config = self
            .fetch_small_blob(reference, &parsed.config, MAX_CONFIG_SIZE, "config")
            .await?;
        let digest = index
            .as_ref()
            .map_or(&manifest.digest, |i| &i.digest)
            .clone();
        Ok(Resolved {
            reference: reference.clone(),
            digest,
            manifest_digest: manifest.digest,
            manifest: manifest.bytes,
            manifest_media_type: manifest.media_type,
            index: index.map(|i| i.bytes),
            config_descriptor: parsed.config,
            config,
            layers: parsed.layers,
        })
    }

    /// Downloads one blob into `store`, streaming and verifying; a blob already present is not
    /// fetched again. Returns the blob's path in the store.
    pub async fn fetch_blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        store: &BlobStore,
    ) -> Result<PathBuf, RegistryError> {
        let store_err = |source| RegistryError::Store {
            reference: reference.to_string(),
            digest: desc.digest.clone(),
            source,
        };
        // Where the blob came from, so a push to a sibling repository can mount it.
        let _ = store.record_source(&desc.digest, &reference.name());
        if store.has(&desc.digest) {
            return store.path(&desc.digest).map_err(store_err);
        }
        digest_hex(&desc.digest).map_err(store_err)?;
        let path = blob_path(reference, &desc.digest);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.fetch_blob_once(reference, desc, store, &path).await {
                // A body cut off mid-way is worth another try; a wrong answer is not.
                Err(RegistryError::Http { source, .. })
                    if attempt < self.attempts && transient(&source) =>
                {
                    tokio::time::sleep(self.backoff * 2u32.saturating_pow(attempt - 1)).await;
                }
                other => return other,
            }
        }
    }

    /// Fetches `layers` into `store`, at most `concurrency` at a time; paths in the same order.
    pub async fn pull_layers(
        &self,
        reference: &Reference,
        layers: &[Descriptor],
        store: &BlobStore,
        concurrency: usize,
    ) -> Result<Vec<PathBuf>, RegistryError> {
        futures::stream::iter(layers)
            .map(|d| self.fetch_blob(reference, d, store))
            .buffered(concurrency.max(1))
            .try_collect()
            .await
    }

    async fn fetch_blob_once(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        store: &BlobStore,
        path: &str,
    ) -> Result<PathBuf, RegistryError> {
        let (resp, url) = self.get(reference, path, None).await?;
        let url = url.as_str();
        let resp = check_status(reference, url, resp).await?;
        if let Some(len) = resp.content_length()
            && len != desc.size
        {
            return Err(size_mismatch(reference, url, desc.size, len));
        }
        let store_err = |source| RegistryError::Store {
            reference: reference.to_string(),
            digest: desc.digest.clone(),
            source,
        };
        let mut ingest = store
            .begin(&desc.digest, Some(desc.size))
            .map_err(store_err)?;
        // Hashing, writing and fsync happen on a blocking thread, fed through a small channel,
        // so the async workers only move bytes and the download overlaps the disk writes.
        let (tx, mut rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
        let writer = tokio::task::spawn_blocking(move || -> Result<Option<PathBuf>, WriteError> {
            while let Some(chunk) = rx.blocking_recv() {
                if chunk.is_empty() {
                    // End-of-body marker: a channel closed without it means an aborted download.
                    return ingest.commit().map(Some).map_err(WriteError::Commit);
                }
                ingest.write_all(&chunk).map_err(WriteError::Write)?;
            }
            Ok(None)
        });
        let mut body = resp.bytes_stream();
        let mut received: u64 = 0;
        let mut failure = None;
        while let Some(next) = body.next().await {
            match next {
                Ok(chunk) if chunk.is_empty() => {}
                Ok(chunk) => {
                    received += chunk.len() as u64;
                    if tx.send(chunk).await.is_err() {
                        break; // the writer failed; its error is reported below
                    }
                }
                Err(source) => {
                    failure = Some(RegistryError::Http {
                        reference: reference.to_string(),
                        url: url.into(),
                        source,
                    });
                    break;
                }
            }
        }
        if failure.is_none() && received == desc.size {
            let _ = tx.send(bytes::Bytes::new()).await;
        }
        drop(tx);
        let written = writer
            .await
            .map_err(|e| invalid(reference, url, &format!("blob writer: {e}")))?;
        if let Some(f) = failure {
            return Err(f);
        }
        match written {
            Ok(Some(path)) => Ok(path),
            Ok(None) => Err(size_mismatch(reference, url, desc.size, received)),
            Err(WriteError::Commit(BlobError::DigestMismatch { expected, actual })) => {
                Err(RegistryError::DigestMismatch {
                    reference: reference.to_string(),
                    url: url.into(),
                    expected,
                    actual,
                })
            }
            Err(WriteError::Commit(e)) => Err(store_err(e)),
            // The ingest refuses bytes past the descriptor's size.
            Err(WriteError::Write(e)) if e.kind() == std::io::ErrorKind::InvalidData => {
                Err(size_mismatch(reference, url, desc.size, received))
            }
            Err(WriteError::Write(source)) => {
                let path = store.path(&desc.digest).unwrap_or_default();
                Err(store_err(BlobError::Io {
                    op: "write ingest for",
                    path,
                    source,
                }))
            }
        }
    }

    /// GETs a manifest or index by tag or digest, with size cap and digest verification.
    async fn fetch_manifest(
        &self,
        reference: &Reference,
        id: &str,
        expected_digest: Option<&str>,
        expected_size: Option<u64>,
    ) -> Result<Fetched, RegistryError> {
        let path = format!("{}/manifests/{id}", reference.repository);
        if let Some(size) = expected_size
            && size > MAX_MANIFEST_SIZE
        {
            let url = nominal_url(reference, &path);
            return Err(too_large(reference, &url, "manifest", size.to_string()));
        }
        let (resp, url) = self.get(reference, &path, Some(MANIFEST_ACCEPT)).await?;
        let resp = check_status(reference, &url, resp).await?;
        let content_type = header_str(resp.headers(), CONTENT_TYPE.as_str());
        let header_digest = header_str(resp.headers(), "docker-content-digest");
        let bytes = read_capped(reference, &url, resp, MAX_MANIFEST_SIZE, "manifest").await?;
        let actual = sha256_digest(&bytes);
        // By digest, the request is the authority; by tag, the registry's header (if any) is.
        let expected = expected_digest
            .map(str::to_string)
            .or(header_digest.filter(|d| digest_hex(d).is_ok()));
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(RegistryError::DigestMismatch {
                reference: reference.to_string(),
                url,
                expected,
                actual,
            });
        }
        if let Some(size) = expected_size
            && size != bytes.len() as u64
        {
            return Err(size_mismatch(reference, &url, size, bytes.len() as u64));
        }
        let (kind, media_type) = classify(reference, &url, content_type.as_deref(), &bytes)?;
        Ok(Fetched {
            bytes,
            digest: actual,
            kind,
            media_type,
            url,
        })
    }

    /// A blob small enough to hold in memory (the config), verified.
    async fn fetch_small_blob(
        &self,
        reference: &Reference,
        desc: &Descriptor,
        max: u64,
        what: &'static str,
    ) -> Result<Vec<u8>, RegistryError> {
        let path = blob_path(reference, &desc.digest);
        if desc.size > max {
            let url = nominal_url(reference, &path);
            return Err(too_large(reference, &url, what, desc.size.to_string()));
        }
        let (resp, url) = self.get(reference, &path, None).await?;
        let resp = check_status(reference, &url, resp).await?;
        let bytes = read_capped(reference, &url, resp, desc.size, what).await?;
        if bytes.len() as u64 != desc.size {
            return Err(size_mismatch(
                reference,
                &url,
                desc.size,
                bytes.len() as u64,
            ));
        }
        let actual = sha256_digest(&bytes);
        if actual != desc.digest {
            let expected = desc.digest.clone();
            return Err(RegistryError::DigestMismatch {
                reference: reference.to_string(),
                url,
                expected,
                actual,
            });
        }
        Ok(bytes)
    }

    /// GET `path` (under `/v2`) with the repository's pull scope, from mirrors then the
    /// registry.
    async fn get(
        &self,
        reference: &Reference,
        path: &str,
        accept: Option<&str>,
    ) -> Result<(reqwest::Response, String), RegistryError> {
        let endpoints = self.endpoints(reference, true)?;
        let mut req = Req::new(reqwest::Method::GET);
        req.accept = accept;
        let scope = scope(reference, "pull");
        let a = self
            .send_path(reference, &endpoints, path, &scope, &req)
            .await?;
        Ok((a.resp, a.url))
    }

    /// A reqwest client for `host` with its TLS settings, made once.
    pub(crate) fn http_for(
        &self,
        host: &str,
        config: Option<&HostConfig>,
        skip_verify: bool,
    ) -> Result<reqwest::Client, RegistryError> {
        if config.is_none() && !skip_verify {
            return Ok(self.http.clone());
        }
        let key = (host.to_string(), skip_verify);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key) {
            return Ok(c.clone());
        }
        let c = hosts::http_client(host, config, skip_verify)?;
        clients.insert(key, c.clone());
        Ok(c)
    }

    /// Treats `registry` as BuildKit's `registry.insecure=true` does: HTTPS without
    /// verification, then plain HTTP.
    pub fn allow_insecure(&self, registry: &str) {
        self.insecure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(registry.to_string());
    }

    pub(crate) fn is_insecure(&self, registry: &str) -> bool {
        self.insecure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(registry)
    }
}

fn blob_path(reference: &Reference, digest: &str) -> String {
    format!("{}/blobs/{digest}", reference.repository)
}

/// The URL a request would have gone to, for errors raised before any request.
fn nominal_url(reference: &Reference, path: &str) -> String {
    format!(
        "{}://{}/v2/{path}",
        reference.scheme(),
        reference.api_host()
    )
}

enum WriteError {
    Write(std::io::Error),
    Commit(BlobError),
}

pub(crate) fn retryable(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

pub(crate) fn transient(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

fn invalid(reference: &Reference, url: &str, reason: &str) -> RegistryError {
    RegistryError::InvalidManifest {
        reference: reference.to_string(),
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

fn size_mismatch(reference: &Reference, url: &str, expected: u64, actual: u64) -> RegistryError {
    RegistryError::SizeMismatch {
        reference: reference.to_string(),
        url: url.to_string(),
        expected,
        actual,
    }
}

fn too_large(reference: &Reference, url: &str, what: &'static str, size: String) -> RegistryError {
    let max = if what == "manifest" {
        MAX_MANIFEST_SIZE
    } else {
        MAX_CONFIG_SIZE
    };
    RegistryError::TooLarge {
        reference: reference.to_string(),
        url: url.to_string(),
        what,
        size,
        max,
    }
}

/// Turns a non-success answer into an error carrying the status and the start of the body.
pub(crate) async fn check_status(
    reference: &Reference,
    url: &str,
    resp: reqwest::Response,
) -> Result<reqwest::Response, RegistryError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let mut body = Vec::new();
    let mut resp = resp;
    while let Ok(Some(chunk)) = resp.chunk().await {
        body.extend_from_slice(&chunk);
        if body.len() as u64 >= MAX_ERROR_BODY {
            body.truncate(MAX_ERROR_BODY as usize);
            break;
        }
    }
    let body = String::from_utf8_lossy(&body).trim().to_string();
    let (reference, url, status) = (reference.to_string(), url.to_string(), status.as_u16());
    // Go's (and nginx's) answer to plain HTTP on a TLS port: say what happened and the fix.
    if status == 400 && url.starts_with("http://") && body.to_ascii_lowercase().contains("https") {
        return Err(RegistryError::TlsExpected {
            host: crate::transport::host_of(&url),
            reference,
            url,
            body,
        });
    }
    if status == 404 {
        return Err(RegistryError::NotFound {
            reference,
            url,
            status,
            body,
        });
    }
    Err(RegistryError::Status {
        reference,
        url,
        status,
        body,
    })
}

/// Reads a body of at most `max` bytes: refuses on Content-Length before reading, and stops
/// reading as soon as the cap is passed (Content-Length may be absent or lie).
pub(crate) async fn read_capped(
    reference: &Reference,
    url: &str,
    mut resp: reqwest::Response,
    max: u64,
    what: &'static str,
) -> Result<Vec<u8>, RegistryError> {
    let too_large = |size: String| RegistryError::TooLarge {
        reference: reference.to_string(),
        url: url.to_string(),
        what,
        size,
        max,
    };
    if let Some(len) = resp.content_length()
        && len > max
    {
        return Err(too_large(len.to_string()));
    }
    let mut out = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if (out.len() + chunk.len()) as u64 > max {
                    return Err(too_large(format!("more than {max}")));
                }
                out.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(out),
            Err(source) => {
                return Err(RegistryError::Http {
                    reference: reference.to_string(),
                    url: url.to_string(),
                    source,
                });
            }
        }
    }
}

/// Decides whether a document is a manifest or an index: the body's `mediaType` first, then the
/// Content-Type, then its shape (OCI allows both to be absent).
fn classify(
    reference: &Reference,
    url: &str,
    content_type: Option<&str>,
    bytes: &[u8],
) -> Result<(Kind, String), RegistryError> {
    let probe: Probe = serde_json::from_slice(bytes)
        .map_err(|e| invalid(reference, url, &format!("not JSON: {e}")))?;
    let schema1 = || RegistryError::Schema1 {
        reference: reference.to_string(),
        url: url.to_string(),
    };
    if probe.schema_version == Some(1) {
        return Err(schema1());
    }
    let header = content_type.map(|c| c.split(';').next().unwrap_or("").trim().to_string());
    let known = |m: &str| {
        [
            types::OCI_MANIFEST,
            types::OCI_INDEX,
            types::DOCKER_MANIFEST,
            types::DOCKER_MANIFEST_LIST,
        ]
        .contains(&m)
            || m == types::DOCKER_SCHEMA1
            || m == types::DOCKER_SCHEMA1_SIGNED
    };
    let media = probe.media_type.clone().or(header.filter(|h| known(h)));
    match media.as_deref() {
        Some(types::OCI_INDEX | types::DOCKER_MANIFEST_LIST) => {
            Ok((Kind::Index, media.unwrap_or_default()))
        }
        Some(types::OCI_MANIFEST | types::DOCKER_MANIFEST) => {
            Ok((Kind::Manifest, media.unwrap_or_default()))
        }
        Some(types::DOCKER_SCHEMA1 | types::DOCKER_SCHEMA1_SIGNED) => Err(schema1()),
        Some(other) => Err(RegistryError::UnsupportedMediaType {
            reference: reference.to_string(),
            url: url.to_string(),
            media_type: other.to_string(),
        }),
        None if probe.manifests.is_some() => Ok((Kind::Index, types::OCI_INDEX.to_string())),
        None if probe.config.is_some() => Ok((Kind::Manifest, types::OCI_MANIFEST.to_string())),
        None => Err(invalid(reference, url, "neither a manifest nor an index")),
    }
}

/// Picks the best entry of an index for `want` (attestation entries are `unknown/unknown` and
/// never match); ties go to the first entry, as containerd does.
fn select_platform(
    reference: &Reference,
    index: &Fetched,
    want: &Platform,
) -> Result<Descriptor, RegistryError> {
    let parsed: Index = serde_json::from_slice(&index.bytes)
        .map_err(|e| invalid(reference, &index.url, &format!("parsing index: {e}")))?;
    let best = parsed
        .manifests
        .iter()
        .filter_map(|d| Some((types::platform_rank(want, d.platform.as_ref()?)?, d)))
        .min_by_key(|(rank, _)| *rank);
    match best {
        Some((_, d)) => {
            digest_hex(&d.digest).map_err(|_| {
                invalid(reference, &index.url, &format!("bad digest {:?}", d.digest))
            })?;
            Ok(d.clone())
        }
        None => {
            let available: Vec<String> = parsed
                .manifests
                .iter()
                .filter_map(|d| {
                    d.platform.as_ref().map(|p| {
                        types::platform_string(&p.os, &p.architecture, p.variant.as_deref())
                    })
                })
                .collect();
            Err(RegistryError::NoMatchingPlatform {
                reference: reference.to_string(),
                platform: want.to_string(),
                available: if available.is_empty() {
                    "nothing".into()
                } else {
                    available.join(", ")
                },
            })
        }
    }
}
