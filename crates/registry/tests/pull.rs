//! Pulls through a real registry (Debian's docker-registry, fed by skopeo) and error paths
//! against a hostile in-test HTTP server.

use kiln_content::blobs::{BlobStore, sha256_digest};
use kiln_registry::{Client, Descriptor, Platform, Reference, RegistryError};
use kiln_testkit::Registry;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BUSYBOX_MANIFEST: &str = kiln_testkit::BUSYBOX_DIGEST;

fn amd64() -> Platform {
    Platform::new("linux", "amd64", None)
}

fn client() -> Client {
    Client::new()
        .unwrap()
        .with_retries(3, Duration::from_millis(10))
}

#[tokio::test]
async fn resolve_and_pull_busybox_from_real_registry() {
    // kiln-testkit's harness: docker-registry on a free port, busybox pushed with skopeo.
    let reg = Registry::with_busybox().unwrap_or_else(|e| panic!("{e}"));
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(&tmp.path().join("store")).unwrap();
    let client = client();

    let reference = Reference::parse(&format!("127.0.0.1:{}/busybox", reg.port)).unwrap();
    let resolved = client.resolve(&reference, &amd64()).await.unwrap();
    assert_eq!(
        resolved.digest, BUSYBOX_MANIFEST,
        "a single manifest pins its own digest"
    );
    assert_eq!(resolved.manifest_digest, BUSYBOX_MANIFEST);
    assert_eq!(sha256_digest(&resolved.manifest), BUSYBOX_MANIFEST);
    assert_eq!(resolved.reference.tag.as_deref(), Some("latest"));
    assert!(resolved.index.is_none());
    assert_eq!(
        sha256_digest(&resolved.config),
        resolved.config_descriptor.digest
    );
    let config: serde_json::Value = serde_json::from_slice(&resolved.config).unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert!(!resolved.layers.is_empty());

    let paths = client
        .pull_layers(&reference, &resolved.layers, &store, 3)
        .await
        .unwrap();
    for (layer, path) in resolved.layers.iter().zip(&paths) {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(sha256_digest(&bytes), layer.digest);
        assert_eq!(bytes.len() as u64, layer.size);
        assert!(store.has(&layer.digest));
    }
    // Present blobs are not fetched again: this works even with the registry gone.
    drop(reg);
    let again = client
        .fetch_blob(&reference, &resolved.layers[0], &store)
        .await
        .unwrap();
    assert_eq!(again, paths[0]);

    // By digest, with the tag kept, resolves to the same thing from what this client already
    // resolved, with no request: what a digest names never changes.
    let pinned = reference.with_digest(BUSYBOX_MANIFEST);
    let memo = client.resolve(&pinned, &amd64()).await.unwrap();
    assert_eq!(memo.manifest, resolved.manifest);
    assert_eq!(memo.config, resolved.config);
    assert_eq!(memo.reference, pinned);
    // A client that has not seen it must ask (the registry is gone: expect an error naming the
    // reference instead of a hang).
    let err = self::client().resolve(&pinned, &amd64()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Http { .. }), "{err}");
    assert!(err.to_string().contains(&pinned.to_string()), "{err}");
}

// ---- hostile server -------------------------------------------------------------------------

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn reply(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
    let headers = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Reply {
        status,
        headers,
        body: body.into(),
    }
}

type Handler = dyn Fn(&str, &BTreeMap<String, String>) -> Reply + Send + Sync;

/// Serves one request per connection with `handler(path, lowercase headers)`; returns the port.
async fn hostile_server(handler: Arc<Handler>) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&buf).to_string();
                let mut lines = head.split("\r\n");
                let path = lines
                    .next()
                    .unwrap_or("")
                    .split(' ')
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let headers = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let r = handler(&path, &headers);
                let mut out = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", r.status);
                let framed = |h: &str| r.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(h));
                if !framed("content-length") && !framed("transfer-encoding") {
                    out += &format!("Content-Length: {}\r\n", r.body.len());
                }
                for (k, v) in &r.headers {
                    out += &format!("{k}: {v}\r\n");
                }
                out += "\r\n";
                let _ = sock.write_all(out.as_bytes()).await;
                let _ = sock.write_all(&r.body).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

fn manifest_json(config: &[u8], layers: &[&[u8]]) -> Vec<u8> {
    let desc = |b: &[u8], mt: &str| serde_json::json!({"mediaType": mt, "digest": sha256_digest(b), "size": b.len()});
    let layers: Vec<_> = layers
        .iter()
        .map(|l| desc(l, "application/vnd.oci.image.layer.v1.tar+gzip"))
        .collect();
    serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": desc(config, "application/vnd.oci.image.config.v1+json"),
        "layers": layers,
    }))
    .unwrap()
}

#[tokio::test]
async fn manifest_not_matching_requested_digest_is_rejected() {
    let served = manifest_json(b"{}", &[]);
    let claimed = sha256_digest(b"something else");
    let port = hostile_server(Arc::new(move |_, _| reply(200, &[], served.clone()))).await;
    let r = Reference::parse(&format!("127.0.0.1:{port}/evil@{claimed}")).unwrap();
    let err = client().resolve(&r, &amd64()).await.unwrap_err();
    match &err {
        RegistryError::DigestMismatch {
            expected,
            reference,
            ..
        } => {
            assert_eq!(expected, &claimed);
            assert!(reference.contains("127.0.0.1"));
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
}

#[tokio::test]
async fn tag_with_lying_docker_content_digest_is_rejected() {
    let served = manifest_json(b"{}", &[]);
    let lie = sha256_digest(b"lie");
    let port = hostile_server(Arc::new(move |_, _| {
        reply(
            200,
            &[("Docker-Content-Digest", lie.as_str())],
            served.clone(),
        )
    }))
    .await;
    let r = Reference::parse(&format!("127.0.0.1:{port}/evil:latest")).unwrap();
    let err = client().resolve(&r, &amd64()).await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
}

#[tokio::test]
async fn blob_with_wrong_content_or_size_is_not_stored() {
    let good = b"the real layer".to_vec();
    let port = hostile_server(Arc::new(|path, _| {
        if path.starts_with("/v2/long/") {
            // Chunked, so no Content-Length warns us: the body is just longer than the descriptor.
            reply(
                200,
                &[("Transfer-Encoding", "chunked")],
                b"14\r\nthe real layer+extra\r\n0\r\n\r\n".to_vec(),
            )
        } else {
            reply(200, &[], b"the fake layer".to_vec())
        }
    }))
    .await;
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path()).unwrap();
    let r = Reference::parse(&format!("127.0.0.1:{port}/evil:latest")).unwrap();
    let desc = Descriptor {
        media_type: "application/octet-stream".into(),
        digest: sha256_digest(&good),
        size: good.len() as u64,
        ..Default::default()
    };
    let err = client().fetch_blob(&r, &desc, &store).await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
    assert!(!store.has(&desc.digest));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("ingest"))
            .unwrap()
            .count(),
        0,
        "temp file left"
    );

    // The right bytes followed by more than the descriptor's size: refused as they arrive.
    let r = Reference::parse(&format!("127.0.0.1:{port}/long:latest")).unwrap();
    let err = client().fetch_blob(&r, &desc, &store).await.unwrap_err();
    assert!(
        matches!(err, RegistryError::SizeMismatch { expected: 14, .. }),
        "{err}"
    );
    assert!(!store.has(&desc.digest));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("ingest"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn oversized_manifest_is_refused_on_content_length() {
    let port = hostile_server(Arc::new(|_, _| {
        reply(200, &[("Content-Length", "5000000")], b"{".to_vec())
    }))
    .await;
    let r = Reference::parse(&format!("127.0.0.1:{port}/big:latest")).unwrap();
    let err = client().resolve(&r, &amd64()).await.unwrap_err();
    assert!(matches!(err, RegistryError::TooLarge { .. }), "{err}");
}

#[tokio::test]
async fn schema1_manifest_gives_a_clear_error() {
    let body = br#"{"schemaVersion":1,"name":"old","tag":"latest","fsLayers":[]}"#.to_vec();
    let port = hostile_server(Arc::new(move |_, _| {
        reply(
            200,
            &[(
                "Content-Type",
                "application/vnd.docker.distribution.manifest.v1+prettyjws",
            )],
            body.clone(),
        )
    }))
    .await;
    let r = Reference::parse(&format!("127.0.0.1:{port}/old:latest")).unwrap();
    let err = client().resolve(&r, &amd64()).await.unwrap_err();
    assert!(matches!(err, RegistryError::Schema1 { .. }), "{err}");
    assert!(err.to_string().contains("schema 1"), "{err}");
}

/// An index with an attestation entry first, a bearer challenge and a 503 on the first try:
/// the client retries, fetches an anonymous token, and picks linux/amd64.
#[tokio::test]
async fn index_with_bearer_auth_and_retry_resolves_platform() {
    let config = br#"{"architecture":"amd64","os":"linux"}"#.to_vec();
    let layer = b"layer".to_vec();
    let manifest = manifest_json(&config, &[&layer]);
    let md = sha256_digest(&manifest);
    let entry = |d: &str, size: usize, os: &str, arch: &str| {
        serde_json::json!({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d,
                           "size": size, "platform": {"os": os, "architecture": arch}})
    };
    let other = sha256_digest(b"arm");
    let index = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&other, 10, "unknown", "unknown"), entry(&other, 10, "linux", "arm64"),
                      entry(&md, manifest.len(), "linux", "amd64")],
    }))
    .unwrap();
    let index_digest = sha256_digest(&index);
    let hits = Arc::new(AtomicUsize::new(0));
    let token_requests = Arc::new(AtomicUsize::new(0));
    let (h, t) = (hits.clone(), token_requests.clone());
    let (cfg, lay, man, idx, md2) = (
        config.clone(),
        layer.clone(),
        manifest.clone(),
        index.clone(),
        md.clone(),
    );
    let port = hostile_server(Arc::new(move |path, headers| {
        if h.fetch_add(1, Ordering::SeqCst) == 0 {
            return reply(503, &[], "busy");
        }
        if path.starts_with("/token") {
            t.fetch_add(1, Ordering::SeqCst);
            assert!(path.contains("scope=repository%3Amulti%3Apull"), "{path}");
            return reply(200, &[], r#"{"token":"t0k","expires_in":300}"#);
        }
        if headers.get("authorization").map(String::as_str) != Some("Bearer t0k") {
            let port = headers.get("host").cloned().unwrap_or_default();
            let challenge = format!(r#"Bearer realm="http://{port}/token",service="hostile""#);
            return reply(401, &[("WWW-Authenticate", challenge.as_str())], "");
        }
        let ct = [("Content-Type", "application/vnd.oci.image.index.v1+json")];
        match path.rsplit('/').next().unwrap_or("") {
            "latest" => reply(200, &ct, idx.clone()),
            d if d == md2 => reply(200, &[], man.clone()),
            d if d == sha256_digest(&cfg) => reply(200, &[], cfg.clone()),
            d if d == sha256_digest(&lay) => reply(200, &[], lay.clone()),
            _ => reply(404, &[], r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#),
        }
    }))
    .await;
    let client = client();
    let r = Reference::parse(&format!("127.0.0.1:{port}/multi")).unwrap();
    let resolved = client.resolve(&r, &amd64()).await.unwrap();
    assert_eq!(
        resolved.digest, index_digest,
        "a tag pointing to an index pins the index"
    );
    assert_eq!(resolved.manifest_digest, md);
    assert_eq!(resolved.index.as_deref(), Some(index.as_slice()));
    assert_eq!(resolved.config, config);
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path()).unwrap();
    client
        .pull_layers(&r, &resolved.layers, &store, 2)
        .await
        .unwrap();
    assert!(store.has(&sha256_digest(&layer)));
    assert_eq!(
        token_requests.load(Ordering::SeqCst),
        1,
        "the token is cached per scope"
    );

    let err = client
        .resolve(&r, &Platform::new("linux", "s390x", None))
        .await
        .unwrap_err();
    match err {
        RegistryError::NoMatchingPlatform { available, .. } => {
            assert!(available.contains("linux/arm64"))
        }
        other => panic!("expected no matching platform, got {other}"),
    }
}
