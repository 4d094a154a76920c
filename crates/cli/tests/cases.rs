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
use std::path::PathBuf;

fn case_dir(name: &str) -> PathBuf {
    kiln_testkit::cases_dir().join(name)
}

/// Builds the public case `name` and compares it with its expected.json.
fn check_case(name: &str) {
    common::check_case(&case_dir(name));
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
    let copy = case_copy(&case_dir("04-copy-corners"), "localhost:1");
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
    let want = expected(&dir);
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
