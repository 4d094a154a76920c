//! The public conformance cases (conformance/kiln-cases), each built with kiln exactly as
//! conformance/tools/build-case.sh spells it, and compared with what BuildKit built
//! (expected.json): rootfs, config and platform as compare.py does, plus history (created_by,
//! empty_layer) and the layer count. And the raw-LLB path: BuildKit's own llb.pb on stdin.
//!
//! The cases' Dockerfiles name `localhost:5000/busybox`; each test builds a copy of its case
//! whose Dockerfile names this binary's registry (a free port) instead. The llb.pb files pin
//! `localhost:5000/busybox:latest@sha256:701b…`, so the raw-LLB tests use a registry on
//! 127.0.0.1:5000 (reused if one answers, as run-cases.sh does; else started here).
//!
//! Every passing case matches history and layer count as well, so all compare them.

mod common;

use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn case_dir(name: &str) -> PathBuf {
    kiln_testkit::cases_dir().join(name)
}

/// Copies `src` to `dst` recursively, keeping symlinks as symlinks and modes as they are.
fn copy_tree(src: &Path, dst: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(src).unwrap();
    let mode = std::fs::Permissions::from_mode(meta.mode() & 0o7777);
    let ft = meta.file_type();
    if ft.is_symlink() {
        std::os::unix::fs::symlink(std::fs::read_link(src).unwrap(), dst).unwrap();
    } else if ft.is_dir() {
        std::fs::create_dir(dst).unwrap();
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &dst.join(e.file_name()));
        }
        std::fs::set_permissions(dst, mode).unwrap();
    } else {
        std::fs::copy(src, dst).unwrap();
        std::fs::set_permissions(dst, mode).unwrap();
    }
}

/// A temp copy of a case whose Dockerfile names `host` instead of localhost:5000, with the
/// symlinks of symlinks.txt present as symlinks (restore-links.sh, for checkouts that made them
/// plain files).
fn case_copy(name: &str, host: &str) -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix("kiln-case-")
        .tempdir()
        .unwrap();
    let dst = tmp.path().join(name);
    copy_tree(&case_dir(name), &dst);
    let dockerfile = dst.join("Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    std::fs::write(&dockerfile, text.replace("localhost:5000", host)).unwrap();
    if let Ok(list) = std::fs::read_to_string(dst.join("symlinks.txt")) {
        for line in list.lines().filter(|l| !l.starts_with('#')) {
            let mut words = line.split_whitespace();
            let (Some(path), Some(target)) = (words.next(), words.next()) else {
                continue;
            };
            let p = dst.join(path);
            if !std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
                let _ = std::fs::remove_file(&p);
                std::os::unix::fs::symlink(target, &p).unwrap();
            }
        }
    }
    tmp
}

/// The words of the case's `args` file, `$CASE` replaced by the case directory.
fn case_args(dir: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(dir.join("args")) else {
        return Vec::new();
    };
    let case = dir.to_string_lossy();
    text.lines()
        .flat_map(|l| {
            l.replace("$CASE", &case)
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// compare.py EXPECTED ACTUAL (rootfs, config, platform); panics with its differences.
#[track_caller]
fn compare(expected: &Path, actual: &Value, what: &str) {
    let tmp = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(tmp.path(), serde_json::to_vec(actual).unwrap()).unwrap();
    let out = std::process::Command::new("python3")
        .arg(repo_root().join("conformance/tools/compare.py"))
        .arg(expected)
        .arg(tmp.path())
        .output()
        .expect("running compare.py");
    assert!(
        out.status.success(),
        "{what}: the image differs from BuildKit's:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn expected(name: &str) -> Value {
    let text = std::fs::read(case_dir(name).join("expected.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

/// Builds a case with the buildctl spelling and compares it with expected.json.
fn check_case(name: &str) {
    let copy = case_copy(name, registry_host());
    let dir = copy.path().join(name);
    let out = copy.path().join("out.tar");
    let store = Store::new();
    let mut cmd = store.kiln();
    cmd.args([
        "build",
        "--progress",
        "plain",
        "--frontend",
        "dockerfile.v0",
    ])
    .arg("--local")
    .arg(format!("context={}", dir.join("ctx").display()))
    .arg("--local")
    .arg(format!("dockerfile={}", dir.display()))
    .args(case_args(&dir))
    .arg("--output")
    .arg(format!("type=oci,dest={}", out.display()));
    run(&mut cmd, BUILD_TIMEOUT).assert_ok();
    let actual = imgtree(&out);
    compare(&case_dir(name).join("expected.json"), &actual, name);
    let want = expected(name);
    assert_eq!(
        actual["history"], want["history"],
        "{name}: history (created_by, empty_layer) differs from BuildKit's"
    );
    assert_eq!(
        actual["layers"], want["layers"],
        "{name}: layer count differs from BuildKit's"
    );
    store.assert_no_mounts();
    store.assert_no_containers();
}

macro_rules! cases {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check_case($name);
            }
        )*
    };
}

cases! {
    case_01_single_stage_app => "01-single-stage-app",
    case_02_multistage_target => "02-multistage-target",
    case_03_arg_env_expansion => "03-arg-env-expansion",
    case_04_copy_corners => "04-copy-corners",
    case_05_dockerignore => "05-dockerignore",
    case_06_heredocs => "06-heredocs",
    case_07_metadata => "07-metadata",
    case_08_whiteouts => "08-whiteouts",
    case_09_workdir_user => "09-workdir-user",
    case_12_links_fifo_modes => "12-links-fifo-modes",
    case_13_platform_args => "13-platform-args",
    case_14_copy_link_parents => "14-copy-link-parents",
}

#[test]
fn case_10_add_tarballs() {
    check_case("10-add-tarballs");
}

#[test]
fn case_11_run_mounts() {
    check_case("11-run-mounts");
}

/// The case's symlinks must reach kiln as symlinks: the copy used above keeps them.
#[test]
fn case_04_copy_keeps_symlinks() {
    let copy = case_copy("04-copy-corners", "localhost:1");
    let link = copy.path().join("04-copy-corners/ctx/links/relative");
    let meta = std::fs::symlink_metadata(&link).unwrap();
    assert!(
        meta.file_type().is_symlink(),
        "{} is not a symlink",
        link.display()
    );
    assert_eq!(
        std::fs::read_link(&link).unwrap(),
        PathBuf::from("../single.txt")
    );
}

/// BuildKit's own LLB for the case on stdin (`buildctl build < llb.pb` spelling) gives the
/// same root filesystem BuildKit built from it.
fn check_llb(name: &str) {
    ensure_registry_5000();
    let dir = case_dir(name);
    let store = Store::new();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("out.tar");
    let llb = std::fs::File::open(dir.join("llb.pb")).unwrap();
    let mut cmd = store.kiln();
    cmd.args(["build", "--progress", "plain"])
        .arg("--local")
        .arg(format!("context={}", dir.join("ctx").display()))
        .arg("--output")
        .arg(format!("type=oci,dest={}", out.display()))
        .stdin(llb);
    run(&mut cmd, BUILD_TIMEOUT).assert_ok();
    let actual = imgtree(&out);
    let want = expected(name);
    let (a, w) = (
        actual["rootfs"].as_object().unwrap(),
        want["rootfs"].as_object().unwrap(),
    );
    let mut diffs = Vec::new();
    for (p, e) in w {
        match a.get(p) {
            None => diffs.push(format!("missing {p}")),
            Some(g) if g != e => diffs.push(format!("differs {p}: want {e} got {g}")),
            _ => {}
        }
    }
    for p in a.keys().filter(|p| !w.contains_key(*p)) {
        diffs.push(format!("extra {p}"));
    }
    assert!(
        diffs.is_empty(),
        "{name} from llb.pb: rootfs differs from BuildKit's:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn llb_01_single_stage_app() {
    check_llb("01-single-stage-app");
}

#[test]
fn llb_02_multistage_target() {
    check_llb("02-multistage-target");
}

#[test]
fn llb_09_workdir_user() {
    check_llb("09-workdir-user");
}
