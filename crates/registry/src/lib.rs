//! OCI distribution client: resolve and pull images from registries.
//!
//! Invariant: nothing leaves this crate unverified. Every manifest and blob is checked against
//! the digest it was asked for (and its size when known) before it is returned or stored.

mod auth;
mod client;
pub mod creds;
pub mod hosts;
mod push;
mod reference;
mod transport;
mod types;

pub use client::{Client, MAX_CONFIG_SIZE, MAX_MANIFEST_SIZE, Resolved};
pub use creds::{CredentialStore, Credentials};
pub use hosts::{Config, ConfigError, HostConfig};
pub use push::{BlobPush, PushReport};
pub use reference::{Reference, ReferenceError};
pub use types::{
    DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED, Descriptor,
    OCI_INDEX, OCI_MANIFEST, Platform,
};

use kiln_content::blobs::BlobError;

/// Errors name the image reference (which includes the registry) and, for HTTP answers, the URL
/// and status.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("setting up the http client")]
    Client(#[source] reqwest::Error),
    /// The causes are in the message: callers keep errors as text (`to_string()`), and a
    /// refused connection or an untrusted certificate must still say so.
    #[error("{reference}: request to {url} failed: {}", causes(source))]
    Http {
        reference: String,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{reference}: {url} answered {status}: {body}")]
    Status {
        reference: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error(
        "{reference}: {url} answered 400 ({body}): {host} speaks TLS, but Kiln spoke plain HTTP \
         to it, as it does by default to a loopback address; trust its certificate with \
         `ca = [\"CA.pem\"]` (or set `http = false`) under [registry.\"{host}\"] in Kiln's config"
    )]
    TlsExpected {
        reference: String,
        url: String,
        host: String,
        body: String,
    },
    #[error("{reference}: not found: {url} answered {status}: {body}")]
    NotFound {
        reference: String,
        url: String,
        status: u16,
        body: String,
    },
    #[error("{reference}: unauthorized at {url}: {reason}")]
    Unauthorized {
        reference: String,
        url: String,
        reason: String,
    },
    #[error("{reference}: token request to {realm} failed: {reason}")]
    Token {
        reference: String,
        realm: String,
        reason: String,
    },
    #[error("{reference}: {url}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch {
        reference: String,
        url: String,
        expected: String,
        actual: String,
    },
    #[error("{reference}: {url}: size mismatch: expected {expected} bytes, got {actual}")]
    SizeMismatch {
        reference: String,
        url: String,
        expected: u64,
        actual: u64,
    },
    #[error("{reference}: {url}: {what} is {size} bytes, over the limit of {max}")]
    TooLarge {
        reference: String,
        url: String,
        what: &'static str,
        size: String,
        max: u64,
    },
    #[error(
        "{reference}: {url} is a Docker schema 1 manifest, which is not supported; \
         push the image again with a current client"
    )]
    Schema1 { reference: String, url: String },
    #[error("{reference}: {url}: unsupported manifest media type {media_type:?}")]
    UnsupportedMediaType {
        reference: String,
        url: String,
        media_type: String,
    },
    #[error("{reference}: no image for platform {platform} in the index (it has: {available})")]
    NoMatchingPlatform {
        reference: String,
        platform: String,
        available: String,
    },
    #[error("{reference}: invalid manifest at {url}: {reason}")]
    InvalidManifest {
        reference: String,
        url: String,
        reason: String,
    },
    #[error("registry configuration: {source}")]
    Config {
        #[from]
        source: ConfigError,
    },
    #[error("{reference}: pushing to {url}: {reason}")]
    Push {
        reference: String,
        url: String,
        reason: String,
    },
    #[error("{reference}: reading local blob {digest}: {reason}")]
    LocalBlob {
        reference: String,
        digest: String,
        reason: String,
    },
    #[error("{reference}: storing blob {digest}")]
    Store {
        reference: String,
        digest: String,
        #[source]
        source: BlobError,
    },
}

/// What lies under a reqwest error ("client error (Connect): invalid peer certificate:
/// UnknownIssuer"), each cause once; its own text only repeats the URL.
fn causes(e: &reqwest::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = cause.source();
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}
