//! Crash safety: a build that dies abruptly (an abort at a named failpoint, or SIGKILL at a random
//! moment) leaves a store that the next build sweeps (no mounts, no runc containers, no temp
//! files) and builds from correctly: the same image as a build on a fresh store.

mod common;

use common::*;
use serde_json::Value;
use std::os::unix::process::ExitStatusExt;
use std::sync::OnceLock;
use std::time::Duration;

fn project() -> Project {
    Project::new(
        &format!(
            r#"FROM {}/busybox
WORKDIR /app
COPY a.txt b.txt ./
RUN cat a.txt b.txt > ab.txt && sleep 0.3
RUN echo second > second.txt
CMD ["cat", "/app/ab.txt"]
"#,
            registry_host()
        ),
        &[("a.txt", "alpha\n"), ("b.txt", "beta\n")],
    )
}

/// The image from a build on a fresh store, once per test binary.
fn reference() -> &'static Value {
    static REF: OnceLock<Value> = OnceLock::new();
    REF.get_or_init(|| {
        let p = project();
        let s = Store::new();
        p.build(&s, "ref.tar", &[]).assert_ok();
        let tree = imgtree(&p.out("ref.tar"));
        assert_eq!(
            tree["rootfs"]["app/ab.txt"]["size"], 11,
            "reference image holds app/ab.txt"
        );
        tree
    })
}

/// After a crash: the next build succeeds, gives the reference image, and leaves the store
/// clean (it swept what the dead process left).
#[track_caller]
fn recovers(p: &Project, s: &Store) {
    let out = "after.tar";
    let _ = std::fs::remove_file(p.out(out));
    p.build(s, out, &[]).assert_ok();
    let tree = imgtree(&p.out(out));
    let want = reference();
    assert_eq!(tree["rootfs"], want["rootfs"], "rootfs after recovery");
    assert_eq!(tree["config"], want["config"], "config after recovery");
    assert_eq!(tree["history"], want["history"], "history after recovery");
    assert_eq!(tree["layers"], want["layers"], "layers after recovery");
    s.assert_no_containers();
    s.assert_no_mounts();
    s.assert_no_temp_files();
}

/// Runs a build that must abort at `failpoint`, then checks recovery.
fn crash_at(failpoint: &str) {
    let want = reference();
    let p = project();
    let s = Store::new();
    build_aborting_at(&p, &s, failpoint);
    if failpoint == "export-before-rename" {
        assert!(
            !p.out("out.tar").exists(),
            "no output file appears before the final rename"
        );
    }
    recovers(&p, &s);
    // And the store still builds the same image with the cache it kept.
    p.build(&s, "again.tar", &[]).assert_ok();
    assert_eq!(imgtree(&p.out("again.tar"))["rootfs"], want["rootfs"]);
}

#[test]
fn crash_blob_before_rename() {
    crash_at("blob-before-rename");
}

#[test]
fn crash_blob_after_rename() {
    crash_at("blob-after-rename");
}

#[test]
fn crash_meta_before_commit() {
    crash_at("meta-before-commit");
}

#[test]
fn crash_layer_apply_mid() {
    crash_at("layer-apply-mid");
}

#[test]
fn crash_export_before_rename() {
    crash_at("export-before-rename");
}

/// A pseudo-random number from the standard library's per-process random hash keys.
fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.finish()
}

/// SIGKILL while a RUN's container runs: the container outlives kiln; the next build must kill
/// it, unmount the step's overlay and build correctly.
#[test]
fn sigkill_during_run_is_swept_by_the_next_build() {
    let p = Project::new(
        &format!(
            "FROM {}/busybox\nRUN echo started-sleeping && sleep 1000\n",
            registry_host()
        ),
        &[],
    );
    let s = Store::new();
    let mut child = Running::spawn(&mut p.build_cmd(&s, "out.tar", &[]));
    child.wait_for_stderr(Duration::from_secs(60), |e| {
        e.lines().any(|l| l.ends_with(" started-sleeping"))
    });
    child.signal(libc::SIGKILL);
    let r = child.wait(Duration::from_secs(30));
    assert_eq!(r.status.signal(), Some(libc::SIGKILL));
    assert!(
        !s.containers().is_empty(),
        "the container outlives the killed kiln (else this test proves nothing)"
    );
    p.write(
        "Dockerfile",
        &format!("FROM {}/busybox\nRUN echo ok > /ok\n", registry_host()),
    );
    p.build(&s, "out.tar", &[]).assert_ok();
    assert_eq!(imgtree(&p.out("out.tar"))["rootfs"]["ok"]["size"], 3);
    s.assert_no_containers();
    s.assert_no_mounts();
    s.assert_no_temp_files();
}

#[test]
fn sigkill_at_random_moments() {
    let _ = reference();
    for trial in 0..5 {
        let delay = Duration::from_millis(50 + random_u64() % 1450);
        eprintln!("trial {trial}: SIGKILL after {delay:?}");
        let p = project();
        let s = Store::new();
        let child = Running::spawn(&mut p.build_cmd(&s, "out.tar", &[]));
        std::thread::sleep(delay);
        child.signal(libc::SIGKILL);
        let r = child.wait(Duration::from_secs(30));
        if r.ok() {
            eprintln!("trial {trial}: the build finished before the kill");
        }
        recovers(&p, &s);
    }
}
