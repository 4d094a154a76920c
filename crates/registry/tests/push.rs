//! Pushes to Debian's docker-registry (HEAD skip, mounts, chunked uploads, read back by pull),
//! pulls through a configured mirror, and more hostile-server cases.

use kiln_content::blobs::{BlobStore, sha256_digest};
use kiln_registry::{BlobPush, Client, Config, Descriptor, Platform, Reference, RegistryError};
use kiln_testkit::Registry;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client() -> Client {
    Client::new()
        .unwrap()
        .with_retries(3, Duration::from_millis(10))
}

fn desc(media_type: &str, bytes: &[u8]) -> Descriptor {
    Descriptor {
        media_type: media_type.into(),
        digest: sha256_digest(bytes),
        size: bytes.len() as u64,
        ..Default::default()
    }
}

/// A tiny image in `store`: (blobs, manifest bytes).
fn image(store: &BlobStore, layer: &[u8]) -> (Vec<Descriptor>, Vec<u8>) {
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    store.put_bytes(config).unwrap();
    store.put_bytes(layer).unwrap();
    let c = desc("application/vnd.oci.image.config.v1+json", config);
    let l = desc("application/vnd.oci.image.layer.v1.tar+gzip", layer);
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": c, "layers": [l],
    }))
    .unwrap();
    (vec![c, l], manifest)
}

#[tokio::test]
async fn push_skips_present_blobs_mounts_siblings_and_reads_back() {
    let reg = Registry::start().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path()).unwrap();
    // Over 16 MiB: uploaded in PATCH chunks.
    let layer: Vec<u8> = (0..17 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (blobs, manifest) = image(&store, &layer);
    let client = client();
    let mt = "application/vnd.oci.image.manifest.v1+json";
    let a = Reference::parse(&format!("{}/team/a:v1", reg.host())).unwrap();

    let first = client
        .push_image(&a, &blobs, mt, &manifest, &store, 2, false)
        .await
        .unwrap();
    assert_eq!((first.uploaded, first.present, first.mounted), (2, 0, 0));
    assert_eq!(first.digest, sha256_digest(&manifest));
    let again = client
        .push_image(&a, &blobs, mt, &manifest, &store, 2, false)
        .await
        .unwrap();
    assert_eq!(
        (again.uploaded, again.present),
        (0, 2),
        "HEAD skips present blobs"
    );

    // Read back by a pull: every byte verified.
    let resolved = client.resolve(&a, &Platform::host()).await.unwrap();
    assert_eq!(resolved.manifest_digest, first.digest);
    let tmp2 = tempfile::tempdir().unwrap();
    let store2 = BlobStore::open(tmp2.path()).unwrap();
    client
        .pull_layers(&a, &resolved.layers, &store2, 2)
        .await
        .unwrap();
    assert_eq!(store2.sources(&blobs[1].digest), [a.name()]);

    // A blob pulled from team/a is mounted into team/b, not uploaded.
    let b = Reference::parse(&format!("{}/team/b:v1", reg.host())).unwrap();
    assert_eq!(
        client.push_blob(&b, &blobs[1], &store2).await.unwrap(),
        BlobPush::Mounted
    );
    assert_eq!(
        client.push_blob(&b, &blobs[1], &store2).await.unwrap(),
        BlobPush::Present
    );

    // A reference pinned to another digest is refused before anything is written.
    let pinned = b.with_digest(&sha256_digest(b"other"));
    let err = client
        .push_manifest(&pinned, mt, &manifest, false)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("pins"), "{err}");
}

#[tokio::test]
async fn pulls_go_through_a_configured_mirror() {
    let reg = Registry::with_busybox().unwrap();
    let config = Config::parse(
        &format!(
            "[registry.\"upstream.invalid\"]\nmirrors = [\"{}\"]\n",
            reg.host()
        ),
        "test.toml",
    )
    .unwrap();
    let client = client().with_config(config);
    let r = Reference::parse("upstream.invalid/busybox").unwrap();
    let resolved = client
        .resolve(&r, &Platform::new("linux", "amd64", None))
        .await;
    assert_eq!(
        resolved.unwrap().manifest_digest,
        kiln_testkit::BUSYBOX_DIGEST
    );
    // Without the mirror the (unresolvable) registry itself is asked, and the error names it.
    let err = self::client()
        .resolve(&r, &Platform::new("linux", "amd64", None))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("upstream.invalid"), "{err}");
}

/// Serves `answer(n, request head)` for the n-th request, one request per connection.
async fn server(answer: impl Fn(usize, &str) -> Vec<u8> + Send + Sync + 'static) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answer = Arc::new(answer);
    let n = Arc::new(AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let (answer, n) = (answer.clone(), n.clone());
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut len = 0;
                while !buf[..len].windows(4).any(|w| w == b"\r\n\r\n") && len < buf.len() {
                    match sock.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => return,
                        Ok(k) => len += k,
                    }
                }
                let head = String::from_utf8_lossy(&buf[..len]).to_string();
                let out = answer(n.fetch_add(1, Ordering::SeqCst), &head);
                let _ = sock.write_all(&out).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    port
}

fn http(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

#[tokio::test]
async fn wrong_manifest_media_type_is_a_clear_error() {
    let port = server(|_, _| {
        http(
            "200 OK",
            "",
            br#"{"schemaVersion":2,"mediaType":"text/html","config":{}}"#,
        )
    })
    .await;
    let r = Reference::parse(&format!("127.0.0.1:{port}/x")).unwrap();
    let err = client().resolve(&r, &Platform::host()).await.unwrap_err();
    assert!(
        matches!(&err, RegistryError::UnsupportedMediaType { media_type, .. } if media_type == "text/html"),
        "{err}"
    );
}

#[tokio::test]
async fn endless_redirects_stop_with_an_error_naming_the_image() {
    let port = server(|n, _| {
        http(
            "302 Found",
            &format!("Location: /v2/x/manifests/r{n}\r\n"),
            b"",
        )
    })
    .await;
    let r = Reference::parse(&format!("127.0.0.1:{port}/x")).unwrap();
    let err = tokio::time::timeout(
        Duration::from_secs(20),
        client().resolve(&r, &Platform::host()),
    )
    .await
    .expect("redirects are bounded")
    .unwrap_err();
    let text = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(text.contains(&format!("127.0.0.1:{port}/x")), "{text}");
    assert!(text.to_lowercase().contains("redirect"), "{text}");
}

#[tokio::test]
async fn blob_500s_then_success_is_retried_and_stored() {
    let blob = b"retry me".to_vec();
    let d = desc("application/octet-stream", &blob);
    let b2 = blob.clone();
    let port = server(move |n, _| {
        if n < 2 {
            http("500 Internal Server Error", "", b"oops")
        } else {
            http("200 OK", "", &b2)
        }
    })
    .await;
    let r = Reference::parse(&format!("127.0.0.1:{port}/x")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path()).unwrap();
    client().fetch_blob(&r, &d, &store).await.unwrap();
    assert!(store.has(&d.digest));
}

#[tokio::test]
async fn push_refuses_a_registry_that_names_another_digest() {
    let tmp = tempfile::tempdir().unwrap();
    let store = BlobStore::open(tmp.path()).unwrap();
    let blob = b"blob".to_vec();
    store.put_bytes(&blob).unwrap();
    let d = desc("application/octet-stream", &blob);
    let port = server(|_, head| {
        if head.starts_with("HEAD ") {
            http("404 Not Found", "", b"")
        } else if head.starts_with("POST ") {
            http("202 Accepted", "Location: /v2/x/blobs/uploads/u1\r\n", b"")
        } else {
            let lie = sha256_digest(b"lie");
            http(
                "201 Created",
                &format!("Docker-Content-Digest: {lie}\r\n"),
                b"",
            )
        }
    })
    .await;
    let r = Reference::parse(&format!("127.0.0.1:{port}/x:t")).unwrap();
    let err = client().push_blob(&r, &d, &store).await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err}");
}
