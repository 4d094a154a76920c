//! Conformance cases (conformance/kiln-cases, conformance/extra-cases): a temp copy of a case
//! that names this test binary's registry, its `args`, and building it with kiln exactly as
//! conformance/tools/build-case.sh spells it, compared with what BuildKit gave.

use super::*;

/// Copies `src` to `dst` recursively, keeping symlinks as symlinks and modes as they are.
pub fn copy_tree(src: &Path, dst: &Path) {
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

/// The case's Dockerfile name: `--opt filename=X` in its `args`, else `Dockerfile`.
pub fn case_dockerfile_name(case: &Path) -> String {
    let args = case_args(case);
    args.windows(2)
        .filter(|w| w[0] == "--opt")
        .find_map(|w| w[1].strip_prefix("filename=").map(str::to_string))
        .unwrap_or_else(|| "Dockerfile".into())
}

/// A temp copy of the case directory `case`, at `<tmp>/<case's name>`, made ready to build as a
/// git checkout cannot hold it:
/// - its Dockerfile names `host` instead of localhost:5000;
/// - the symlinks of symlinks.txt are symlinks (restore-links.sh, for checkouts that made them
///   plain files);
/// - `ctx/` exists (git keeps no empty directory, and some cases' contexts are empty);
/// - the case's `prepare.sh`, if any, has run in the copy (it recreates empty directories, hard
///   links and modes git does not keep).
pub fn case_copy(case: &Path, host: &str) -> tempfile::TempDir {
    let tmp = tempfile::Builder::new()
        .prefix("kiln-case-")
        .tempdir()
        .unwrap();
    let dst = tmp.path().join(case.file_name().expect("a case directory"));
    copy_tree(case, &dst);
    let dockerfile = dst.join(case_dockerfile_name(case));
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
    std::fs::create_dir_all(dst.join("ctx")).unwrap();
    let prepare = dst.join("prepare.sh");
    if prepare.exists() {
        let out = std::process::Command::new("bash")
            .arg(&prepare)
            .output()
            .expect("running prepare.sh");
        assert!(
            out.status.success(),
            "{}: {}",
            prepare.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    tmp
}

/// The words of the case's `args` file, `$CASE` replaced by the case directory.
pub fn case_args(dir: &Path) -> Vec<String> {
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
pub fn compare(expected: &Path, actual: &Value, what: &str) {
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

/// The case's expected.json.
pub fn expected(case: &Path) -> Value {
    let text = std::fs::read(case.join("expected.json")).unwrap();
    serde_json::from_slice(&text).unwrap()
}

fn case_name(case: &Path) -> String {
    case.file_name()
        .expect("a case directory")
        .to_string_lossy()
        .into_owned()
}

/// Builds the (copied) case directory `dir` with the buildctl spelling of build-case.sh, into
/// `out`.
fn build_case(store: &Store, dir: &Path, out: &Path) -> Run {
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
    .args(case_args(dir))
    .arg("--output")
    .arg(format!("type=oci,dest={}", out.display()));
    run(&mut cmd, BUILD_TIMEOUT)
}

/// Builds the case directory `case` with the buildctl spelling and compares the image with its
/// expected.json: rootfs, config and platform (compare.py), history and layer count. The base
/// image comes from this test binary's registry.
pub fn check_case(case: &Path) {
    check_case_on(case, registry_host());
}

/// check_case with the base image from the registry `host` (the case's copy names it instead of
/// localhost:5000).
pub fn check_case_on(case: &Path, host: &str) {
    let name = case_name(case);
    let copy = case_copy(case, host);
    let dir = copy.path().join(&name);
    let out = copy.path().join("out.tar");
    let store = Store::new();
    build_case(&store, &dir, &out).assert_ok();
    let actual = imgtree(&out);
    compare(&case.join("expected.json"), &actual, &name);
    let want = expected(case);
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

/// Builds the case directory `case`, which BuildKit fails to build (its expected-error.txt):
/// the build must fail too, and leave no mount or container behind.
pub fn check_case_fails(case: &Path) {
    let name = case_name(case);
    let copy = case_copy(case, registry_host());
    let dir = copy.path().join(&name);
    let out = copy.path().join("out.tar");
    let store = Store::new();
    let r = build_case(&store, &dir, &out);
    assert!(
        !r.ok(),
        "{name}: kiln built the case, but BuildKit fails with:\n{}\nkiln's output:\n{}",
        std::fs::read_to_string(case.join("expected-error.txt")).unwrap_or_default(),
        r.stderr
    );
    store.assert_no_mounts();
    store.assert_no_containers();
}
