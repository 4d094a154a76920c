//! Registries that ask for credentials, end to end with `kiln build`:
//!
//! - Debian's docker-registry with htpasswd basic auth over TLS, its certificate signed by a CA
//!   the test makes with openssl and that Kiln trusts only through `--config` (`ca = [...]`);
//!   credentials from a Docker config `auths` entry; clear errors without the CA and with a
//!   wrong password.
//! - A bearer-token server in front of a plain-HTTP docker-registry (written here on std::net):
//!   tokens for credentials from a docker-credential helper (`credHelpers`, `credsStore`), the
//!   scopes and service asked for, token caching, refresh after expiry, and no password leaks.

mod common;

use common::bearer::*;
use common::*;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn no_panic(r: &Run) {
    assert!(
        !r.stderr.contains("panicked") && !r.stderr.contains("RUST_BACKTRACE"),
        "kiln panicked:\n{}",
        r.stderr
    );
}

// ---- TLS + basic auth ------------------------------------------------------------------------

const TLS_PASSWORD: &str = "kiln-tls-pw-3b9e07d4-s3cret";

/// A test CA and a server certificate it signed, for IP:127.0.0.1 and DNS:localhost.
struct TestCa {
    /// The CA certificate (PEM).
    ca: PathBuf,
    /// The server's certificate and key (PEM).
    cert: PathBuf,
    key: PathBuf,
    /// A directory in skopeo's `--cert-dir` shape: the CA as `ca.crt`.
    cert_dir: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn test_ca(dir: &Path) -> TestCa {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(
        dir.join("ca.cnf"),
        "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = Kiln test CA\n\
         [v3_ca]\nbasicConstraints = critical,CA:TRUE\nkeyUsage = critical,keyCertSign,cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName = IP:127.0.0.1,DNS:localhost\nbasicConstraints = critical,CA:FALSE\n\
         keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
    let mut ca = vec!["req", "-x509", "-config", "ca.cnf", "-extensions", "v3_ca"];
    ca.extend(ec);
    ca.extend([
        "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
    ]);
    openssl(dir, &ca);
    let mut csr = vec!["req", "-new"];
    csr.extend(ec);
    csr.extend([
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    openssl(dir, &csr);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-set_serial",
            "2",
            "-days",
            "2",
            "-extfile",
            "server.ext",
            "-out",
            "server.pem",
        ],
    );
    let cert_dir = dir.join("certs");
    std::fs::create_dir_all(&cert_dir).unwrap();
    std::fs::copy(dir.join("ca.pem"), cert_dir.join("ca.crt")).unwrap();
    TestCa {
        ca: dir.join("ca.pem"),
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
        cert_dir,
    }
}

#[test]
fn tls_registry_with_basic_auth_and_a_ca_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca(&dir.path().join("pki"));
    let reg_dir = dir.path().join("registry");
    std::fs::create_dir_all(&reg_dir).unwrap();
    let reg = TestRegistry::start(
        &reg_dir,
        RegistryOptions {
            password: Some(TLS_PASSWORD),
            tls: Some((&ca.cert, &ca.key)),
        },
    );
    let host = reg.host();
    let cert_dir = ca.cert_dir.to_str().unwrap();
    let creds = format!("{AUTH_USER}:{TLS_PASSWORD}");

    // The registry really is TLS-only with auth: skopeo, trusting the CA, seeds busybox.
    let layout = tempfile::tempdir().unwrap();
    kiln_testkit::busybox_layout(layout.path()).unwrap();
    skopeo(&[
        "copy",
        "-q",
        "--dest-cert-dir",
        cert_dir,
        "--dest-creds",
        &creds,
        &format!("oci:{}:latest", layout.path().display()),
        &format!("docker://{host}/busybox:latest"),
    ]);
    let base: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--raw",
        "--cert-dir",
        cert_dir,
        "--creds",
        &creds,
        &format!("docker://{host}/busybox:latest"),
    ]))
    .unwrap();
    let base_layer = base["layers"][0]["digest"].as_str().unwrap().to_string();

    // Credentials: a Docker config `auths` entry. Trust: only Kiln's config.
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let auths = |password: &str| {
        let auth = b64(&format!("{AUTH_USER}:{password}"));
        std::fs::write(
            docker.join("config.json"),
            format!(r#"{{"auths":{{"{host}":{{"auth":"{auth}"}}}}}}"#),
        )
        .unwrap();
    };
    let config = dir.path().join("kiln.toml");
    let with_ca = format!("[registry.\"{host}\"]\nca = [\"{}\"]\n", ca.ca.display());

    let store = Store::new();
    let p = Project::new(
        &format!("FROM {host}/busybox\nCOPY f /f\nRUN cat /f > /g\n"),
        &[("f", "over tls\n")],
    );
    let meta = p.out("meta.json");
    let build = |toml: &str, tag: &str| {
        std::fs::write(&config, toml).unwrap();
        let mut c = p.build_cmd_output(
            &store,
            &format!("type=image,name={host}/x/app:{tag},push=true"),
            &[
                "--config",
                config.to_str().unwrap(),
                "--metadata-file",
                meta.to_str().unwrap(),
            ],
        );
        c.env("DOCKER_CONFIG", &docker).env_remove("KILN_CONFIG");
        let r = run(&mut c, BUILD_TIMEOUT);
        no_panic(&r);
        for leak in [TLS_PASSWORD.to_string(), b64(&creds)] {
            assert!(
                !r.stderr.contains(&leak),
                "password in stderr:\n{}",
                r.stderr
            );
            assert!(
                !contains_bytes(&r.stdout, leak.as_bytes()),
                "password in stdout"
            );
        }
        r
    };

    // Pull, build and push over TLS with basic auth.
    auths(TLS_PASSWORD);
    build(&with_ca, "v1").assert_ok();
    let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    let digest = m["containerimage.digest"].as_str().unwrap().to_string();
    let inspect: serde_json::Value = serde_json::from_str(&skopeo(&[
        "inspect",
        "--cert-dir",
        cert_dir,
        "--creds",
        &creds,
        &format!("docker://{host}/x/app:v1"),
    ]))
    .unwrap();
    assert_eq!(inspect["Digest"], digest.as_str());
    let layers = inspect["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), 3, "busybox + COPY + RUN: {inspect:#}");
    assert_eq!(
        layers[0],
        base_layer.as_str(),
        "the base is the pulled busybox"
    );
    // skopeo copies it out whole, verifying every blob.
    let copy = tempfile::tempdir().unwrap();
    skopeo(&[
        "copy",
        "-q",
        "--src-cert-dir",
        cert_dir,
        "--src-creds",
        &creds,
        &format!("docker://{host}/x/app:v1"),
        &format!("oci:{}:x", copy.path().display()),
    ]);

    // The same registry without the CA: a TLS answer Kiln cannot trust, or (loopback, so plain
    // HTTP by default) a TLS server spoken to in plain HTTP. Both errors say so and name it.
    for (toml, what) in [
        (
            format!("[registry.\"{host}\"]\nhttp = false\n"),
            "certificate",
        ),
        (format!("[registry.\"{host}\"]\n"), "TLS"),
        (String::new(), "TLS"),
    ] {
        let r = build(&toml, "noca");
        r.assert_failed();
        assert!(
            r.stderr.contains(what),
            "{toml:?}: no {what:?} in:\n{}",
            r.stderr
        );
        assert!(
            r.stderr.contains(&format!("{host}/busybox")),
            "{toml:?}: the error names no registry:\n{}",
            r.stderr
        );
    }

    // A wrong password: the registry's 401, naming it, and not the password.
    let wrong = "wrong-pw-5d1c88e2";
    auths(wrong);
    let r = build(&with_ca, "wrongpw");
    r.assert_failed();
    assert!(
        r.stderr.contains(&format!("{host}/busybox")),
        "the error names no registry:\n{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("401") || r.stderr.to_lowercase().contains("unauthorized"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains(wrong),
        "password in stderr:\n{}",
        r.stderr
    );
    // Nothing was pushed by the failed builds.
    let tags: serde_json::Value = serde_json::from_str(&skopeo(&[
        "list-tags",
        "--cert-dir",
        cert_dir,
        "--creds",
        &creds,
        &format!("docker://{host}/x/app"),
    ]))
    .unwrap();
    assert_eq!(tags["Tags"], serde_json::json!(["v1"]));

    for secret in [TLS_PASSWORD, wrong] {
        let leaks = tree_contains(store.root(), secret.as_bytes());
        assert!(leaks.is_empty(), "password stored in {leaks:?}");
    }
    store.assert_no_mounts();
    store.assert_no_containers();
}

#[test]
fn bearer_tokens_from_credential_helpers_are_scoped_cached_and_refreshed() {
    let dir = tempfile::tempdir().unwrap();
    let reg_dir = dir.path().join("registry");
    std::fs::create_dir_all(&reg_dir).unwrap();
    let upstream = TestRegistry::start(&reg_dir, RegistryOptions::default());
    let layout = tempfile::tempdir().unwrap();
    kiln_testkit::busybox_layout(layout.path()).unwrap();
    skopeo(&[
        "copy",
        "-q",
        "--dest-tls-verify=false",
        &format!("oci:{}:latest", layout.path().display()),
        &format!("docker://{}/busybox:latest", upstream.host()),
    ]);
    let proxy = BearerProxy::start(upstream.port);
    let host = proxy.host();

    // Anonymous: the token server refuses, and so does the build, naming the registry.
    let bin = dir.path().join("bin");
    let helper_log = write_credential_helper(&bin, "kilntest", BEARER_PASSWORD);
    let path = path_with(&bin);
    let docker = dir.path().join("docker");
    std::fs::create_dir_all(&docker).unwrap();
    let p = Project::new(
        &format!("FROM {host}/busybox\nCOPY f /f\n"),
        &[("f", "bearer test\n")],
    );
    let meta = p.out("meta.json");
    let mut outputs: Vec<Run> = Vec::new();
    let mut build = |store: &Store, config: &str, tag: &str| {
        std::fs::write(docker.join("config.json"), config).unwrap();
        let mut c = p.build_cmd_output(
            store,
            &format!("type=image,name={host}/team/app:{tag},push=true"),
            &["--metadata-file", meta.to_str().unwrap()],
        );
        c.env("DOCKER_CONFIG", &docker).env("PATH", &path);
        let r = run(&mut c, BUILD_TIMEOUT);
        no_panic(&r);
        let ok = r.ok();
        let stderr = r.stderr.clone();
        outputs.push(r);
        (ok, stderr)
    };
    let read_back = |tag: &str| -> String {
        let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
        let digest = m["containerimage.digest"].as_str().unwrap().to_string();
        let inspect: serde_json::Value = serde_json::from_str(&skopeo(&[
            "inspect",
            "--tls-verify=false",
            &format!("docker://{}/team/app:{tag}", upstream.host()),
        ]))
        .unwrap();
        assert_eq!(inspect["Digest"], digest.as_str(), "{tag}");
        digest
    };
    let pull = BTreeSet::from([("busybox".to_string(), actions(&["pull"]))]);
    let push = BTreeSet::from([("team/app".to_string(), actions(&["pull", "push"]))]);
    // A mount from busybox asks for push on the target and pull on the source.
    let mount = BTreeSet::from([
        ("team/app".to_string(), actions(&["pull", "push"])),
        ("busybox".to_string(), actions(&["pull"])),
    ]);

    let store = Store::new();
    let (ok, stderr) = build(&store, "{}", "anon");
    assert!(!ok, "an anonymous build succeeded:\n{stderr}");
    assert!(stderr.contains(&format!("{host}/busybox")), "{stderr}");
    assert!(stderr.contains("401"), "{stderr}");
    let seen = proxy.take();
    assert!(seen.forwarded.is_empty(), "{:?}", seen.forwarded);
    assert!(
        seen.tokens.iter().all(|t| !t.authenticated),
        "{:?}",
        seen.tokens
    );

    // credHelpers, then credsStore: pull and push through the token server.
    let mut stores = vec![store];
    for (config, tag) in [
        (
            format!(r#"{{"credHelpers":{{"{host}":"kilntest"}}}}"#),
            "helpers",
        ),
        (r#"{"credsStore":"kilntest"}"#.to_string(), "store"),
    ] {
        let store = Store::new();
        let (ok, stderr) = build(&store, &config, tag);
        stores.push(store);
        assert!(ok, "{tag}: {stderr}");
        read_back(tag);
        let seen = proxy.take();
        let t = &seen.tokens;
        assert!(
            t.iter().all(|t| t.service == SERVICE && t.authenticated),
            "{tag}: {t:#?}"
        );
        let sets: Vec<_> = t.iter().map(scope_set).collect();
        assert!(
            sets.contains(&pull),
            "{tag}: no pull token for FROM: {t:#?}"
        );
        assert!(
            sets.iter()
                .any(|s| s.contains(&("team/app".to_string(), actions(&["pull", "push"])))),
            "{tag}: no push,pull token for the target: {t:#?}"
        );
        assert!(
            sets.iter().all(|s| *s == pull || *s == push || *s == mount),
            "{tag}: a token request asked for something else: {t:#?}"
        );
        // Cached: one token per scope for the whole build, against many registry requests.
        for s in [&pull, &push, &mount] {
            let n = sets.iter().filter(|x| *x == s).count();
            assert!(n <= 1, "{tag}: {n} token requests for {s:?}: {t:#?}");
        }
        // Manifest, config and layer of the base, three HEADs and the manifest of the push:
        // a build that resolves each pinned digest once makes at least these seven.
        assert!(seen.forwarded.len() >= 7, "{tag}: {:#?}", seen.forwarded);
        // (Each token is asked for with the OAuth2 POST first, as containerd does; this server
        // has none, so a GET with basic credentials follows.)
        assert!(
            t.len() * 2 <= seen.forwarded.len()
                && t.len() + seen.token_posts <= seen.forwarded.len(),
            "{tag}: {} token requests (and {} POSTs) for {} registry requests",
            t.len(),
            seen.token_posts,
            seen.forwarded.len()
        );
        // Every refusal was the first request of a scope, before its token existed.
        assert!(
            seen.refused.iter().all(|(_, why)| *why == "none"),
            "{tag}: {:#?}",
            seen.refused
        );
        assert!(
            seen.forwarded
                .iter()
                .any(|l| l == &format!("PUT /v2/team/app/manifests/{tag}")),
            "{tag}: {:#?}",
            seen.forwarded
        );
        for h in &seen.heads {
            assert!(
                !h.contains(BEARER_PASSWORD),
                "password sent to the registry"
            );
            assert!(
                !h.contains(&b64(&format!("{AUTH_USER}:{BEARER_PASSWORD}"))),
                "basic credentials sent to the registry: {h}"
            );
        }
    }

    // Tokens that die after two seconds, and a registry slow enough that a build outlives them
    // (a push's HEAD, POST, PUT and manifest PUT follow one another: over 2.1 s): the proxy
    // refuses the expired token, Kiln fetches a new one, and the build succeeds.
    proxy.set(Duration::from_secs(2), Duration::from_millis(700));
    let store = Store::new();
    let (ok, stderr) = build(&store, r#"{"credsStore":"kilntest"}"#, "expiry");
    stores.push(store);
    assert!(ok, "expiry: {stderr}");
    read_back("expiry");
    let seen = proxy.take();
    let expired = seen
        .refused
        .iter()
        .filter(|(_, why)| *why == "expired")
        .count();
    assert!(
        expired >= 1,
        "no token outlived its life: {:#?}",
        seen.refused
    );
    assert!(
        seen.refused
            .iter()
            .all(|(_, why)| *why == "none" || *why == "expired"),
        "{:#?}",
        seen.refused
    );
    let push_tokens = seen
        .tokens
        .iter()
        .filter(|t| scope_set(t).contains(&("team/app".to_string(), actions(&["pull", "push"]))))
        .count();
    let pull_tokens = seen.tokens.iter().filter(|t| scope_set(t) == pull).count();
    assert!(
        push_tokens + pull_tokens >= 3,
        "an expired token was not replaced: {:#?}",
        seen.tokens
    );

    // The helper was asked about the registry host only, in each build that named it.
    let asked = std::fs::read_to_string(&helper_log).unwrap();
    assert!(asked.lines().count() >= 3, "{asked}");
    assert!(asked.lines().all(|l| l == host), "{asked}");

    // The password is nowhere: not in the output, the stores, or the registry's log.
    let basic = b64(&format!("{AUTH_USER}:{BEARER_PASSWORD}"));
    for r in &outputs {
        for leak in [BEARER_PASSWORD, basic.as_str()] {
            assert!(
                !r.stderr.contains(leak),
                "password in stderr:\n{}",
                r.stderr
            );
            assert!(
                !contains_bytes(&r.stdout, leak.as_bytes()),
                "password in stdout"
            );
        }
    }
    for store in &stores {
        let leaks = tree_contains(store.root(), BEARER_PASSWORD.as_bytes());
        assert!(leaks.is_empty(), "password stored in {leaks:?}");
    }
    let log = std::fs::read_to_string(&upstream.log).unwrap();
    assert!(!log.is_empty());
    assert!(!log.contains(BEARER_PASSWORD) && !log.contains(&basic));
}
