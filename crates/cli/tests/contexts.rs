//! Named contexts (`--build-context`, `--opt context:NAME=…`) and `oci-layout://` sources end
//! to end, and a foreign `FROM --platform` failing at its first RUN.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn busybox() -> String {
    format!("{}/busybox", registry_host())
}

/// Builds into a local directory; returns the run and the output's root.
fn build_local(p: &Project, store: &Store, extra: &[&str]) -> (Run, PathBuf) {
    // A fresh destination each time.
    let dest = p.out(&format!("rootfs-{:x}", rand_suffix()));
    let r = run(
        &mut p.build_cmd_output(store, &format!("type=local,dest={}", dest.display()), extra),
        BUILD_TIMEOUT,
    );
    (r, dest)
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A directory holding `files` (path, content).
fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (path, content) in files {
        let p = d.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    d
}

#[test]
fn docker_image_context_is_used_by_from() {
    let p = Project::new("FROM base\nRUN echo built > /built.txt\n", &[]);
    let store = Store::new();
    let ctx = format!("base=docker-image://{}", busybox());
    let (r, root) = build_local(&p, &store, &["--build-context", &ctx]);
    r.assert_ok();
    assert_eq!(read(&root.join("built.txt")), "built\n");
    assert!(root.join("bin/busybox").exists());
    assert!(r.stderr.contains("[context base]"), "{}", r.stderr);
}

#[test]
fn directory_context_is_used_by_copy_from() {
    let src = dir_with(&[
        ("hello.txt", "hello from src\n"),
        ("secret.txt", "no\n"),
        (".dockerignore", "secret.txt\n"),
    ]);
    let df = format!(
        "FROM {}\nCOPY --from=src /hello.txt /hello.txt\nCOPY --from=src / /all/\n",
        busybox()
    );
    let p = Project::new(&df, &[]);
    let store = Store::new();
    let ctx = format!("src={}", src.path().display());
    let (r, root) = build_local(&p, &store, &["--build-context", &ctx]);
    r.assert_ok();
    assert_eq!(read(&root.join("hello.txt")), "hello from src\n");
    assert!(root.join("all/hello.txt").exists());
    // The context's own .dockerignore applies, as BuildKit's dockerui reads it.
    assert!(!root.join("all/secret.txt").exists());
}

#[test]
fn a_context_overrides_an_image_and_a_stage() {
    let src = dir_with(&[("marker", "from the context\n")]);
    // `FROM alpine` would need the network: the context named alpine replaces it, and the stage
    // named `build` (whose RUN would fail) is replaced by another context.
    let df = "FROM alpine AS build\nRUN exit 1\nFROM alpine\nCOPY --from=build /bin/busybox /bb\n";
    let p = Project::new(df, &[]);
    let store = Store::new();
    let a = format!("alpine={}", src.path().display());
    let b = format!("build=docker-image://{}", busybox());
    let (r, root) = build_local(&p, &store, &["--build-context", &a, "--build-context", &b]);
    r.assert_ok();
    assert_eq!(read(&root.join("marker")), "from the context\n");
    assert!(root.join("bb").exists());
}

#[test]
fn oci_layout_context_is_used_by_from() {
    let layout = tempfile::tempdir().unwrap();
    let digest = kiln_testkit::busybox_layout(layout.path()).expect("busybox layout");
    let p = Project::new("FROM img\nRUN echo ok > /ok.txt\n", &[]);
    let store = Store::new();
    for spec in [
        format!("img=oci-layout://{}", layout.path().display()),
        format!("img=oci-layout://{}:latest", layout.path().display()),
        format!("img=oci-layout://{}@{digest}", layout.path().display()),
    ] {
        let (r, root) = build_local(&p, &store, &["--build-context", &spec]);
        r.assert_ok();
        assert_eq!(read(&root.join("ok.txt")), "ok\n", "{spec}");
        assert!(root.join("bin/busybox").exists(), "{spec}");
    }
    // A tag the layout does not have fails on the client, naming the layout.
    let spec = format!("img=oci-layout://{}:nope", layout.path().display());
    let (r, _) = build_local(&p, &store, &["--build-context", &spec]);
    r.assert_failed();
    assert!(
        r.stderr.contains("no image tagged \"nope\""),
        "{}",
        r.stderr
    );
}

#[test]
fn oci_layout_blobs_are_verified() {
    let layout = tempfile::tempdir().unwrap();
    kiln_testkit::busybox_layout(layout.path()).expect("busybox layout");
    // Corrupt the layer blob (the largest one): the build must fail, naming the digest.
    let blobs = layout.path().join("blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| std::fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&biggest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&biggest, bytes).unwrap();
    let p = Project::new("FROM img\nRUN true\n", &[]);
    let store = Store::new();
    let spec = format!("img=oci-layout://{}", layout.path().display());
    let (r, _) = build_local(&p, &store, &["--build-context", &spec]);
    r.assert_failed();
    let name = biggest.file_name().unwrap().to_string_lossy().into_owned();
    assert!(r.stderr.contains(&name), "{}", r.stderr);
}

#[test]
fn buildctl_spelling_with_a_local() {
    let src = dir_with(&[("hello.txt", "buildctl\n")]);
    let df = format!(
        "FROM {}\nCOPY --from=src /hello.txt /hello.txt\n",
        busybox()
    );
    let p = Project::new(&df, &[]);
    let store = Store::new();
    let dest = p.out("rootfs");
    let ctx = p.ctx();
    let mut cmd = store.kiln();
    cmd.args([
        "build",
        "--progress",
        "plain",
        "--frontend",
        "dockerfile.v0",
    ])
    .arg("--local")
    .arg(format!("context={}", ctx.display()))
    .arg("--local")
    .arg(format!("dockerfile={}", ctx.display()))
    .arg("--local")
    .arg(format!("srcdir={}", src.path().display()))
    .args(["--opt", "context:src=local:srcdir"])
    .arg("--output")
    .arg(format!("type=local,dest={}", dest.display()));
    run(&mut cmd, BUILD_TIMEOUT).assert_ok();
    assert_eq!(read(&dest.join("hello.txt")), "buildctl\n");
}

#[test]
fn bad_contexts_fail_clearly() {
    let df = format!("FROM {}\nCOPY --from=src /a /a\n", busybox());
    let p = Project::new(&df, &[]);
    let store = Store::new();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--build-context", "src=/no/such/dir"],
            "--build-context src=/no/such/dir: /no/such/dir is not a directory",
        ),
        (
            &["--opt", "context:src=local:nosuch"],
            "no local directory named \"nosuch\"",
        ),
        (
            &["--opt", "context:src=bogus:x"],
            "unsupported context source bogus for src",
        ),
        (
            &[
                "--opt",
                "context:src=oci-layout://nostore@sha256:0000000000000000000000000000000000000000000000000000000000000000",
            ],
            "no OCI layout store \"nostore\"",
        ),
    ];
    for (extra, want) in cases {
        let (r, _) = build_local(&p, &store, extra);
        r.assert_failed();
        assert!(
            r.stderr.contains(want),
            "{extra:?}: want {want:?} in:\n{}",
            r.stderr
        );
    }
}

/// Rewrites the busybox layout's config to say arm64 and pushes it as `busybox-arm64`.
fn push_arm64_busybox() -> String {
    let layout = tempfile::tempdir().unwrap();
    kiln_testkit::busybox_layout(layout.path()).expect("busybox layout");
    let dir = layout.path();
    let blob = |d: &str| {
        dir.join("blobs/sha256")
            .join(d.trim_start_matches("sha256:"))
    };
    let put = |bytes: &[u8]| -> (String, usize) {
        let d = kiln_oci::sha256_digest(bytes);
        std::fs::write(blob(&d), bytes).unwrap();
        (d, bytes.len())
    };
    let mut index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let mdesc = &mut index["manifests"][0];
    let mut manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(mdesc["digest"].as_str().unwrap())).unwrap())
            .unwrap();
    let mut config: Value = serde_json::from_slice(
        &std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap(),
    )
    .unwrap();
    config["architecture"] = "arm64".into();
    let (cd, cs) = put(&serde_json::to_vec(&config).unwrap());
    manifest["config"]["digest"] = cd.into();
    manifest["config"]["size"] = cs.into();
    let (md, ms) = put(&serde_json::to_vec(&manifest).unwrap());
    mdesc["digest"] = md.into();
    mdesc["size"] = ms.into();
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let target = format!("{}/busybox-arm64:latest", registry_host());
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", dir.display()))
        .arg(format!("docker://{target}"))
        .output()
        .expect("running skopeo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target
}

#[test]
fn foreign_platform_fails_at_the_first_run() {
    if kiln_llb::host_arch() == "arm64" {
        eprintln!("skipped: the host is arm64");
        return;
    }
    let image = push_arm64_busybox();
    let df = format!("FROM --platform=linux/arm64 {image}\nCOPY hello.txt /\nRUN true\n");
    let p = Project::new(&df, &[("hello.txt", "hi\n")]);
    let store = Store::new();
    let (r, _) = build_local(&p, &store, &[]);
    r.assert_failed();
    let want = format!(
        "cannot run linux/arm64 steps on this linux/{} host: emulation is not set up",
        kiln_llb::host_arch()
    );
    assert!(r.stderr.contains(&want), "{}", r.stderr);
    assert!(r.stderr.contains("binfmt_misc"), "{}", r.stderr);
    // The failing step is the RUN: FROM and COPY were fine.
    assert!(r.stderr.contains("RUN true"), "{}", r.stderr);
}
