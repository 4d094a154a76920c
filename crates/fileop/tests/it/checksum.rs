//! Content checksums: what changes the digest and what does not.

use std::fs;
use std::os::unix::fs::{PermissionsExt, chown, symlink};
use std::path::Path;

use filetime::{FileTime, set_file_mtime};
use kiln_fileop::{ChecksumOpts, FileOpError, checksum};

fn tree() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    fs::create_dir_all(r.join("app/src")).unwrap();
    fs::write(r.join("app/src/main.rs"), "fn main() {}\n").unwrap();
    fs::write(r.join("app/readme.md"), "hello\n").unwrap();
    fs::write(r.join("app/build.tmp"), "junk\n").unwrap();
    fs::write(r.join("other.txt"), "unrelated\n").unwrap();
    symlink("src/main.rs", r.join("app/link")).unwrap();
    symlink("app/readme.md", r.join("readme-link")).unwrap();
    t
}

fn sum(root: &Path, p: &str) -> String {
    checksum(root, p, &ChecksumOpts::default()).unwrap()
}

fn opts(include: &[&str], exclude: &[&str]) -> ChecksumOpts {
    ChecksumOpts {
        include_patterns: include.iter().map(|s| s.to_string()).collect(),
        exclude_patterns: exclude.iter().map(|s| s.to_string()).collect(),
        ..ChecksumOpts::default()
    }
}

#[test]
fn format_and_determinism() {
    let a = tree();
    let b = tree();
    let d = sum(a.path(), "/app");
    assert!(d.starts_with("sha256:") && d.len() == 7 + 64, "{d}");
    assert_eq!(d, sum(b.path(), "/app"), "same content in two places");
    assert_ne!(d, sum(a.path(), "/app/src"));
}

#[test]
fn content_mode_owner_and_link_target_change_it() {
    let t = tree();
    let r = t.path();
    for (i, p) in [(0u32, "/app"), (1, "/app/src/main.rs")] {
        let before = sum(r, p);
        fs::write(r.join("app/src/main.rs"), format!("fn main() {{ {p} }}")).unwrap();
        let after_content = sum(r, p);
        assert_ne!(before, after_content, "content {p}");
        fs::set_permissions(
            r.join("app/src/main.rs"),
            fs::Permissions::from_mode(0o750 + i),
        )
        .unwrap();
        let after_mode = sum(r, p);
        assert_ne!(after_content, after_mode, "chmod {p}");
        chown(r.join("app/src/main.rs"), Some(1234 + i), Some(1234)).unwrap();
        let after_owner = sum(r, p);
        assert_ne!(after_mode, after_owner, "chown {p}");
        chown(r.join("app/src/main.rs"), None, Some(99 + i)).unwrap();
        assert_ne!(after_owner, sum(r, p), "chgrp {p}");
    }
    let before = sum(r, "/app");
    fs::remove_file(r.join("app/link")).unwrap();
    symlink("readme.md", r.join("app/link")).unwrap();
    assert_ne!(before, sum(r, "/app"), "link target");
    let before = sum(r, "/app");
    fs::set_permissions(r.join("app/src"), fs::Permissions::from_mode(0o700)).unwrap();
    assert_ne!(before, sum(r, "/app"), "a directory's mode");
    let before = sum(r, "/app");
    fs::set_permissions(
        r.join("app/src/main.rs"),
        fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    assert_ne!(before, sum(r, "/app"), "setuid bit");
}

#[test]
fn mtime_and_unselected_files_do_not() {
    let t = tree();
    let r = t.path();
    let app = sum(r, "/app");
    let file = sum(r, "/app/readme.md");
    for p in ["app", "app/src", "app/src/main.rs", "app/readme.md"] {
        set_file_mtime(r.join(p), FileTime::from_unix_time(1_000_000, 7)).unwrap();
    }
    assert_eq!(app, sum(r, "/app"), "touch");
    fs::write(r.join("other.txt"), "changed\n").unwrap();
    fs::write(r.join("new.txt"), "new\n").unwrap();
    assert_eq!(app, sum(r, "/app"), "outside the selection");
    fs::write(r.join("app/src/main.rs"), "x").unwrap();
    assert_eq!(file, sum(r, "/app/readme.md"), "sibling of a selected file");
}

#[test]
fn missing_path_is_not_found_in_buildkit_words() {
    let t = tree();
    let e = checksum(t.path(), "/missing", &ChecksumOpts::default()).unwrap_err();
    assert!(matches!(e, FileOpError::NotFound { .. }));
    assert_eq!(e.to_string(), "\"/missing\": not found");
    let e = checksum(t.path(), "/other.txt/x", &ChecksumOpts::default()).unwrap_err();
    assert!(e.is_not_found(), "{e}");
}

#[test]
fn follow_links() {
    let t = tree();
    let r = t.path();
    let follow = ChecksumOpts {
        follow_links: true,
        ..ChecksumOpts::default()
    };
    let followed = checksum(r, "/readme-link", &follow).unwrap();
    assert_eq!(followed, sum(r, "/app/readme.md"));
    assert_ne!(followed, sum(r, "/readme-link"));
    fs::write(r.join("app/readme.md"), "changed\n").unwrap();
    assert_ne!(followed, checksum(r, "/readme-link", &follow).unwrap());
}

#[test]
fn wildcards() {
    let t = tree();
    let r = t.path();
    let w = ChecksumOpts {
        wildcard: true,
        ..ChecksumOpts::default()
    };
    let md = checksum(r, "/app/*.md", &w).unwrap();
    fs::write(r.join("app/build.tmp"), "other junk\n").unwrap();
    assert_eq!(
        md,
        checksum(r, "/app/*.md", &w).unwrap(),
        "non-matching file"
    );
    fs::write(r.join("app/readme.md"), "changed\n").unwrap();
    assert_ne!(md, checksum(r, "/app/*.md", &w).unwrap(), "matching file");
    let md = checksum(r, "/app/*.md", &w).unwrap();
    fs::write(r.join("app/notes.md"), "new match\n").unwrap();
    assert_ne!(md, checksum(r, "/app/*.md", &w).unwrap(), "a new match");
    let none = checksum(r, "/app/*.none", &w).unwrap();
    assert_eq!(
        none,
        checksum(r, "/nodir/*.x", &w).unwrap(),
        "empty matches agree"
    );
}

#[test]
fn include_and_exclude_patterns() {
    let t = tree();
    let r = t.path();
    let ex = opts(&[], &["*.tmp"]);
    let inc = opts(&["src"], &[]);
    let e1 = checksum(r, "/app", &ex).unwrap();
    let i1 = checksum(r, "/app", &inc).unwrap();
    fs::write(r.join("app/build.tmp"), "other junk\n").unwrap();
    fs::write(r.join("app/readme.md"), "changed\n").unwrap();
    assert_eq!(i1, checksum(r, "/app", &inc).unwrap(), "outside include");
    assert_ne!(
        e1,
        checksum(r, "/app", &ex).unwrap(),
        "readme is not excluded"
    );
    let e2 = checksum(r, "/app", &ex).unwrap();
    fs::write(r.join("app/build.tmp"), "more junk\n").unwrap();
    assert_eq!(e2, checksum(r, "/app", &ex).unwrap(), "excluded file");
    fs::write(r.join("app/src/main.rs"), "changed").unwrap();
    assert_ne!(i1, checksum(r, "/app", &inc).unwrap(), "included file");
}

/// With patterns, BuildKit follows the symlinks it selects directly under the root (or a path
/// written with a trailing slash): a dangling one is not found. Deeper ones, and the same tree
/// without patterns, are fine.
#[test]
fn filtered_checksums_follow_top_level_symlinks() {
    let t = tree();
    let r = t.path();
    symlink("nowhere", r.join("dangling")).unwrap();
    symlink("nowhere", r.join("app/deep-dangling")).unwrap();
    let mut ex = opts(&[], &["*.md"]);
    ex.follow_links = true;
    match checksum(r, "/", &ex) {
        Err(FileOpError::NotFound { path }) => assert_eq!(path, "/dangling"),
        other => panic!("expected not found, got {other:?}"),
    }
    checksum(r, "/", &opts(&[], &[])).unwrap();
    let plain = ChecksumOpts {
        follow_links: true,
        ..ChecksumOpts::default()
    };
    checksum(r, "/", &plain).unwrap();
    // Under a subdirectory named without a trailing slash, its own header sits above.
    let sub = ex.clone();
    checksum(r, "/app", &sub).unwrap();
    assert!(matches!(
        checksum(r, "/app/", &sub),
        Err(FileOpError::NotFound { path }) if path == "/app/deep-dangling"
    ));
}

/// COPY --parents: each required path must prefix a selected entry; an include pattern that
/// selects nothing (`""`, from `COPY --parents ./`) makes "/" not found, as in BuildKit.
#[test]
fn required_paths_must_be_selected() {
    let t = tree();
    let r = t.path();
    let mut o = opts(&["app/src/**"], &[]);
    o.required_paths = vec!["/app/src".into()];
    checksum(r, "/", &o).unwrap();
    o.required_paths = vec!["/other.txt".into()];
    assert!(matches!(
        checksum(r, "/", &o),
        Err(FileOpError::NotFound { path }) if path == "/other.txt"
    ));
    let mut nothing = opts(&[""], &[]);
    nothing.required_paths = vec!["/".into()];
    assert!(matches!(
        checksum(r, "/", &nothing),
        Err(FileOpError::NotFound { path }) if path == "/"
    ));
}
