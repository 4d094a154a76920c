//! Running real containers with runc on a busybox rootfs. Needs root, runc and busybox-static;
//! skipped (with a note) when any is missing.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kiln_exec::{
    ContainerRequest, ExecError, Runc, SpecHost, Stream, build_spec, hosts_file, resolve_user,
};
use tokio_util::sync::CancellationToken;

const APPLETS: [&str; 9] = [
    "sh", "id", "cat", "echo", "sleep", "ls", "touch", "hostname", "pwd",
];

struct Fixture {
    _tmp: tempfile::TempDir,
    rootfs: PathBuf,
    runc: Runc,
    state: PathBuf,
    calls: PathBuf,
}

fn fixture() -> Option<Fixture> {
    let busybox = Path::new("/bin/busybox");
    if !rustix::process::geteuid().is_root() || !busybox.exists() || which("runc").is_none() {
        eprintln!("skipped: needs root, runc and /bin/busybox");
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let rootfs = tmp.path().join("rootfs");
    for dir in ["bin", "etc", "tmp", "proc", "sys", "dev"] {
        std::fs::create_dir_all(rootfs.join(dir)).unwrap();
    }
    std::fs::copy(busybox, rootfs.join("bin/busybox")).unwrap();
    for applet in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
         app:x:1000:1000:app user:/home/app:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:4444:app\n",
    )
    .unwrap();

    // The runtime is a wrapper that logs each call, then execs runc.
    let calls = tmp.path().join("calls.log");
    let wrapper = tmp.path().join("runtime.sh");
    let runc_path = which("runc").unwrap();
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n",
            calls.display(),
            runc_path.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let state = tmp.path().join("state");
    let runc = Runc::new(&state, tmp.path().join("bundles")).with_binary(&wrapper);
    Some(Fixture {
        _tmp: tmp,
        rootfs,
        runc,
        state,
        calls,
    })
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn request(f: &Fixture, id: &str, args: &[&str]) -> ContainerRequest {
    ContainerRequest {
        id: format!("kiln-test-{id}-{}", std::process::id()),
        rootfs: f.rootfs.clone(),
        args: args.iter().map(|s| s.to_string()).collect(),
        cwd: "/".into(),
        ..Default::default()
    }
}

/// Runs to completion; (exit code, stdout, stderr).
async fn run(f: &Fixture, req: ContainerRequest) -> Result<(i32, String, String), ExecError> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = f
        .runc
        .run(
            req,
            |stream, data: &[u8]| match stream {
                Stream::Stdout => out.extend_from_slice(data),
                Stream::Stderr => err.extend_from_slice(data),
            },
            CancellationToken::new(),
        )
        .await?;
    Ok((
        status.code,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    ))
}

async fn listed(f: &Fixture) -> String {
    let out = tokio::process::Command::new(which("runc").unwrap())
        .arg("--root")
        .arg(&f.state)
        .args(["list", "-q"])
        .output()
        .await
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn echo_exit_codes_and_cleanup() {
    let Some(f) = fixture() else { return };
    let (code, out, err) = run(&f, request(&f, "echo", &["echo", "hello"]))
        .await
        .unwrap();
    assert_eq!((code, out.as_str()), (0, "hello\n"), "stderr: {err}");

    let (code, _, _) = run(
        &f,
        request(&f, "exit", &["sh", "-c", "echo oops >&2; exit 3"]),
    )
    .await
    .unwrap();
    assert_eq!(code, 3);

    let calls = std::fs::read_to_string(&f.calls).unwrap();
    assert!(calls.contains(" run --bundle "), "{calls}");
    // `runc run` removes a container that exited by itself, so the driver only deletes
    // what is left; either way nothing may remain in the state root.
    assert_eq!(listed(&f).await, "");
    assert!(
        !f.state
            .join(format!("kiln-test-exit-{}", std::process::id()))
            .exists()
    );
    let bundles: Vec<_> = std::fs::read_dir(f._tmp.path().join("bundles"))
        .unwrap()
        .collect();
    assert!(bundles.is_empty(), "bundles are removed");
}

#[tokio::test]
async fn runtime_failures_are_errors_not_exit_codes() {
    let Some(f) = fixture() else { return };
    let err = run(&f, request(&f, "nope", &["/bin/does-not-exist"]))
        .await
        .unwrap_err();
    match err {
        ExecError::Runtime { id, message } => {
            assert!(id.starts_with("kiln-test-nope"));
            assert!(message.contains("does-not-exist"), "{message}");
        }
        other => panic!("expected a runtime error, got {other:?}"),
    }
    assert_eq!(listed(&f).await, "");
}

#[tokio::test]
async fn users_and_groups() {
    let Some(f) = fixture() else { return };
    let mut req = request(&f, "idapp", &["id"]);
    req.user = "app".into();
    let (_, out, _) = run(&f, req).await.unwrap();
    assert_eq!(
        out.trim(),
        "uid=1000(app) gid=1000(app) groups=1000(app),4444(extra)"
    );

    let mut req = request(&f, "idgrp", &["id"]);
    req.user = "app:4444".into();
    let (_, out, _) = run(&f, req).await.unwrap();
    assert_eq!(
        out.trim(),
        "uid=1000(app) gid=4444(extra) groups=4444(extra)"
    );

    let mut req = request(&f, "home", &["sh", "-c", "echo $HOME"]);
    req.user = "app".into();
    let (_, out, _) = run(&f, req).await.unwrap();
    assert_eq!(out.trim(), "/home/app");
}

#[tokio::test]
async fn hostname_hosts_and_cwd() {
    let Some(f) = fixture() else { return };
    let (_, out, _) = run(&f, request(&f, "hostname", &["hostname"]))
        .await
        .unwrap();
    assert_eq!(out, "buildkitsandbox\n");

    let (_, out, _) = run(&f, request(&f, "hosts", &["cat", "/etc/hosts"]))
        .await
        .unwrap();
    assert_eq!(out, hosts_file("", &[]));

    // Seccomp filter on, new privileges allowed (setuid tools work), default caps only.
    let (_, out, _) = run(&f, request(&f, "status", &["cat", "/proc/self/status"]))
        .await
        .unwrap();
    assert!(out.contains("Seccomp:\t2"), "{out}");
    assert!(out.contains("NoNewPrivs:\t0"), "{out}");
    assert!(out.contains("CapEff:\t00000000a80425fb"), "{out}");

    let mut req = request(&f, "nonet", &["ls", "/sys/class/net"]);
    req.network = kiln_exec::Network::None;
    let (_, out, _) = run(&f, req).await.unwrap();
    assert_eq!(out, "lo\n", "a fresh network namespace has loopback only");

    let mut req = request(&f, "cwd", &["sh", "-c", "pwd && touch made"]);
    req.cwd = "/work/deep/dir".into();
    req.user = "app".into();
    let (code, out, err) = run(&f, req).await.unwrap();
    assert_eq!((code, out.as_str()), (0, "/work/deep/dir\n"), "{err}");
    let made = f.rootfs.join("work/deep/dir");
    let md = std::fs::metadata(&made).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    assert_eq!(std::fs::metadata(made.join("made")).unwrap().uid(), 1000);
}

#[tokio::test]
async fn cancel_kills_and_deletes() {
    let Some(f) = fixture() else { return };
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        trigger.cancel();
    });
    let started = Instant::now();
    let result = f
        .runc
        .run(request(&f, "sleep", &["sleep", "1000"]), |_, _| {}, cancel)
        .await;
    assert!(
        matches!(result, Err(ExecError::Cancelled { .. })),
        "{result:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(listed(&f).await, "");
    let calls = std::fs::read_to_string(&f.calls).unwrap();
    assert!(calls.contains("kill kiln-test-sleep"), "{calls}");

    // Dropping the future half-way (a timeout, an aborted task) also removes the container.
    let dropped = tokio::time::timeout(
        Duration::from_millis(300),
        f.runc.run(
            request(&f, "dropped", &["sleep", "1000"]),
            |_, _| {},
            CancellationToken::new(),
        ),
    )
    .await;
    assert!(dropped.is_err(), "timed out");
    assert_eq!(listed(&f).await, "");
}

#[tokio::test]
async fn sweep_removes_a_dead_process_containers() {
    let Some(f) = fixture() else { return };
    // A container left running by a process that no longer exists.
    let req = request(&f, "leftover", &["sleep", "1000"]);
    let bundle = f._tmp.path().join("bundles").join(&req.id);
    std::fs::create_dir_all(&bundle).unwrap();
    std::fs::write(bundle.join("owner"), "4194303999").unwrap();
    std::fs::write(bundle.join("hosts"), hosts_file("", &[])).unwrap();
    std::fs::write(bundle.join("resolv.conf"), "").unwrap();
    let user = resolve_user(&f.rootfs, "").unwrap();
    let spec = build_spec(&req, &user, &SpecHost::detect(&bundle));
    std::fs::write(bundle.join("config.json"), spec.to_string()).unwrap();
    let status = std::process::Command::new(f.runc.binary())
        .arg("--root")
        .arg(&f.state)
        .args(["run", "-d", "--bundle"])
        .arg(&bundle)
        .arg(&req.id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert_eq!(listed(&f).await.trim(), req.id);

    let swept = f.runc.sweep().await.unwrap();
    assert_eq!(swept, vec![req.id.clone()]);
    assert_eq!(listed(&f).await, "");
    assert!(!bundle.exists());
}
