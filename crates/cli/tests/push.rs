//! Pushing built images: a round trip through Debian's docker-registry read back with skopeo,
//! the requests a push makes (asserted from a logging proxy in front of the registry), and
//! basic auth with credentials from a docker-credential helper that must never leak.

mod common;

use common::*;
use kiln_testkit::Registry;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// A TCP proxy in front of a registry that logs each request line (`METHOD PATH`), and which
/// connection carried it.
struct Proxy {
    port: u16,
    log: Arc<Mutex<Vec<String>>>,
    connections: Arc<Mutex<Vec<(usize, String)>>>,
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    fn start(upstream: u16) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let log2 = log.clone();
        let connections = Arc::new(Mutex::new(Vec::new()));
        let connections2 = connections.clone();
        rt.spawn(async move {
            let mut n = 0;
            while let Ok((client, _)) = listener.accept().await {
                n += 1;
                let conn = n;
                let log = log2.clone();
                let connections = connections2.clone();
                tokio::spawn(async move {
                    let Ok(server) = tokio::net::TcpStream::connect(("127.0.0.1", upstream)).await
                    else {
                        return;
                    };
                    let (cr, mut cw) = client.into_split();
                    let (mut sr, mut sw) = server.into_split();
                    tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut sr, &mut cw).await;
                    });
                    let mut reader = BufReader::new(cr);
                    // One request at a time: head, logged, then exactly Content-Length bytes.
                    loop {
                        let mut head = String::new();
                        loop {
                            let mut line = String::new();
                            match reader.read_line(&mut line).await {
                                Ok(0) | Err(_) => return,
                                Ok(_) => {}
                            }
                            head.push_str(&line);
                            if line == "\r\n" {
                                break;
                            }
                        }
                        let first = head.lines().next().unwrap_or("").to_string();
                        let parts: Vec<&str> = first.split(' ').collect();
                        if parts.len() >= 2 {
                            let line = format!("{} {}", parts[0], parts[1]);
                            connections.lock().unwrap().push((conn, line.clone()));
                            log.lock().unwrap().push(line);
                        }
                        let len: u64 = head
                            .lines()
                            .find_map(|l| {
                                let (k, v) = l.split_once(':')?;
                                k.eq_ignore_ascii_case("content-length")
                                    .then(|| v.trim().parse().ok())?
                            })
                            .unwrap_or(0);
                        if sw.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let mut body = (&mut reader).take(len);
                        if tokio::io::copy(&mut body, &mut sw).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        Proxy {
            port,
            log,
            connections,
            _rt: rt,
        }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }
}

/// A pull of an image with many layers downloads several at once, but no more than four:
/// observed as the number of connections that carried blob GETs (the client reuses an idle
/// connection, so one connection means one download at a time).
#[test]
fn image_layers_download_concurrently_with_a_bound() {
    let reg = Registry::with_busybox().unwrap();
    let store = Store::new();
    let mut dockerfile = format!("FROM {}/busybox\n", reg.host());
    for i in 0..8 {
        dockerfile.push_str(&format!("RUN head -c 3000000 /dev/urandom > /layer{i}\n"));
    }
    let p = Project::new(&dockerfile, &[]);
    let name = format!("{}/many/layers:v1", reg.host());
    run(
        &mut p.build_cmd_output(&store, &format!("type=image,name={name},push=true"), &[]),
        BUILD_TIMEOUT,
    )
    .assert_ok();

    let proxy = Proxy::start(reg.port);
    let pull = Project::new(
        &format!(
            "FROM {}/many/layers:v1\nRUN cat /layer7 > /dev/null\n",
            proxy.host()
        ),
        &[],
    );
    pull.build(&Store::new(), "out.tar", &[]).assert_ok();
    let blob_gets: Vec<(usize, String)> = proxy
        .connections
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, l)| l.starts_with("GET ") && l.contains("/blobs/sha256:"))
        .cloned()
        .collect();
    // busybox, eight layers and the config.
    assert_eq!(blob_gets.len(), 10, "{blob_gets:#?}");
    let mut conns: Vec<usize> = blob_gets.iter().map(|(c, _)| *c).collect();
    conns.sort();
    conns.dedup();
    assert!(
        (2..=5).contains(&conns.len()),
        "layers came over {} connections (config fetch + at most 4 at once): {blob_gets:#?}",
        conns.len()
    );
}

fn uploads(log: &[String]) -> Vec<&String> {
    log.iter()
        .filter(|l| l.starts_with("PATCH ") || l.starts_with("PUT ") && l.contains("/blobs/"))
        .collect()
}

#[test]
fn push_round_trip_mounts_skips_and_reads_back_with_skopeo() {
    let reg = Registry::with_busybox().unwrap();
    let proxy = Proxy::start(reg.port);
    let host = proxy.host();
    let store = Store::new();
    let p = Project::new(
        &format!("FROM {host}/busybox\nCOPY hello.txt /hello.txt\n"),
        &[("hello.txt", "hello from kiln\n")],
    );
    let meta = p.out("meta.json");
    let name = format!("{host}/pushed/app:v1");
    let r = run(
        p.build_cmd_output(
            &store,
            &format!("type=image,name={name},push=true"),
            &["--metadata-file", meta.to_str().unwrap()],
        )
        .env("DOCKER_CONFIG", p.dir.path()),
        BUILD_TIMEOUT,
    );
    r.assert_ok();
    let log = proxy.take();

    // The busybox layer was mounted from its repository, not uploaded; the new layer and
    // the config were uploaded; the manifest went last.
    let base: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{}/busybox", reg.host()),
    ]))
    .unwrap();
    let base_layer = base["layers"][0]["digest"].as_str().unwrap().to_string();
    let mount = format!("POST /v2/pushed/app/blobs/uploads/?mount={base_layer}&from=busybox");
    assert!(log.contains(&mount), "no mount POST in {log:#?}");
    assert!(
        !uploads(&log).iter().any(|l| l.contains(&base_layer)),
        "{log:#?}"
    );
    assert_eq!(uploads(&log).len(), 2, "new layer and config: {log:#?}");
    assert_eq!(
        log.last().unwrap(),
        "PUT /v2/pushed/app/manifests/v1",
        "{log:#?}"
    );

    // Metadata as buildctl writes it.
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let digest = m["containerimage.digest"].as_str().unwrap();
    assert_eq!(m["image.name"], name.as_str());
    assert_eq!(m["containerimage.descriptor"]["digest"], digest);
    assert_eq!(
        m["containerimage.descriptor"]["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json",
        "BuildKit's default for type=image is Docker media types"
    );
    assert!(m["containerimage.config.digest"].is_string());

    // skopeo reads it back, and copies it out whole (it verifies every blob).
    let inspect: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{name}"),
    ]))
    .unwrap();
    assert_eq!(inspect["Digest"], digest);
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 2);
    let copy = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "-q",
        "--src-tls-verify=false",
        &format!("docker://{name}"),
        &format!("oci:{}:x", copy.path().display()),
    ]);

    // The buildx spelling, to a new tag: every layer is there already, so only the config
    // (its creation time is new) is uploaded.
    let layers: Vec<String> = inspect["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    let name2 = format!("{host}/pushed/app:v2");
    let mut c = store.kiln();
    c.args(["build", "--progress", "plain", "-t", &name2, "--push"])
        .arg(p.ctx())
        .env("DOCKER_CONFIG", p.dir.path());
    run(&mut c, BUILD_TIMEOUT).assert_ok();
    let log = proxy.take();
    let up = uploads(&log);
    assert!(up.len() <= 1, "{log:#?}");
    assert!(
        !up.iter()
            .any(|u| layers.iter().any(|l| u.contains(l.as_str()))),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.contains("mount=")),
        "present blobs are not mounted: {log:#?}"
    );
    assert!(log.contains(&"PUT /v2/pushed/app/manifests/v2".to_string()));
    let again: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--tls-verify=false",
        &format!("docker://{name2}"),
    ]))
    .unwrap();
    assert_eq!(again["Digest"].as_str().unwrap().len(), digest.len());

    // push-by-digest with OCI media types: no tag is written.
    let mut c = store.kiln();
    let out = format!(
        "type=image,name={host}/bydigest/app:nope,push=true,push-by-digest=true,oci-mediatypes=true"
    );
    c.args([
        "build",
        "--progress",
        "plain",
        "-o",
        &out,
        "--metadata-file",
    ])
    .arg(&meta)
    .arg(p.ctx())
    .env("DOCKER_CONFIG", p.dir.path());
    run(&mut c, BUILD_TIMEOUT).assert_ok();
    let log = proxy.take();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let d = m["containerimage.digest"].as_str().unwrap();
    assert!(
        log.contains(&format!("PUT /v2/bydigest/app/manifests/{d}")),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|l| l.ends_with("manifests/nope")),
        "{log:#?}"
    );
    let raw: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{host}/bydigest/app@{d}"),
    ]))
    .unwrap();
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
}

#[test]
fn push_needs_a_name_and_tag_alone_only_builds() {
    let store = Store::new();
    let p = Project::new("FROM scratch\nCOPY a /a\n", &[("a", "a")]);
    let r = run(
        &mut p.build_cmd_output(&store, "type=image,push=true", &[]),
        BUILD_TIMEOUT,
    );
    r.assert_failed();
    assert!(r.stderr.contains("needs name=REF"), "{}", r.stderr);
    let mut c = store.kiln();
    c.args(["build", "--progress", "plain", "-t", "localhost:1/x"])
        .arg(p.ctx());
    let r = run(&mut c, BUILD_TIMEOUT);
    r.assert_ok();
    assert!(r.stderr.contains("no output specified"), "{}", r.stderr);
}

// ---- basic auth with a credential helper ----------------------------------------------------

const PASSWORD: &str = "kiln-pw-7f3a9c21-s3cret";

#[test]
fn basic_auth_with_credential_helpers_never_leaks_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let reg = TestRegistry::start(
        dir.path(),
        RegistryOptions {
            password: Some(PASSWORD),
            ..Default::default()
        },
    );
    let host = reg.host();
    // Seed busybox with skopeo's own credentials.
    let layout = tempfile::tempdir().unwrap();
    kiln_testkit::busybox_layout(layout.path()).unwrap();
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        "--dest-creds",
        &format!("{AUTH_USER}:{PASSWORD}"),
        &format!("oci:{}:latest", layout.path().display()),
        &format!("docker://{host}/busybox:latest"),
    ]);

    // The helper and the Docker config that names it.
    let bin = dir.path().join("bin");
    let helper_log = write_credential_helper(&bin, "kilntest", PASSWORD);
    let docker_config = dir.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let path = path_with(&bin);

    let store = Store::new();
    let p = Project::new(
        &format!("FROM {host}/busybox\nCOPY f /f\n"),
        &[("f", "auth test\n")],
    );
    let build = |config: &str, tag: &str| {
        std::fs::write(docker_config.join("config.json"), config).unwrap();
        let mut c = store.kiln();
        c.args([
            "build",
            "--progress",
            "plain",
            "-t",
            &format!("{host}/app:{tag}"),
            "--push",
        ])
        .arg(p.ctx())
        .env("DOCKER_CONFIG", &docker_config)
        .env("PATH", &path);
        run(&mut c, BUILD_TIMEOUT)
    };

    // No credentials: a clear refusal naming the image, the registry's answer and the fix.
    let r = build("{}", "none");
    r.assert_failed();
    assert!(r.stderr.contains("credentials required"), "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("{host}/busybox")),
        "{}",
        r.stderr
    );

    for (config, tag) in [
        (
            format!(r#"{{"credHelpers":{{"{host}":"kilntest"}}}}"#),
            "helpers",
        ),
        (r#"{"credsStore":"kilntest"}"#.to_string(), "store"),
    ] {
        let r = build(&config, tag);
        r.assert_ok();
        assert!(!r.stderr.contains(PASSWORD), "password in stderr");
        assert!(
            !contains_bytes(&r.stdout, PASSWORD.as_bytes()),
            "password in stdout"
        );
        skopeo(&[
            "inspect",
            "--tls-verify=false",
            "--creds",
            &format!("{AUTH_USER}:{PASSWORD}"),
            &format!("docker://{host}/app:{tag}"),
        ]);
    }
    let asked = std::fs::read_to_string(helper_log).unwrap();
    assert!(
        !asked.is_empty() && asked.lines().all(|l| l == host),
        "{asked}"
    );
    let leaks = tree_contains(store.root(), PASSWORD.as_bytes());
    assert!(leaks.is_empty(), "password stored in {leaks:?}");
}
