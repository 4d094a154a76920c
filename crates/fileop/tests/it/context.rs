//! The build-context copy: what a client sends and what it leaves out.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, chown, symlink};
use std::os::unix::net::UnixListener;
use std::path::Path;

use filetime::{FileTime, set_file_mtime};
use kiln_fileop::{ChecksumOpts, ContextFilter, checksum, sync_context};

fn client_dir() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    fs::create_dir_all(r.join("src/deep")).unwrap();
    fs::create_dir_all(r.join("node_modules/pkg")).unwrap();
    fs::create_dir_all(r.join("logs")).unwrap();
    fs::write(r.join("src/main.rs"), "fn main() {}\n").unwrap();
    fs::write(r.join("src/deep/keep.txt"), "keep\n").unwrap();
    fs::write(r.join("node_modules/pkg/index.js"), "x\n").unwrap();
    fs::write(r.join("logs/a.log"), "log\n").unwrap();
    fs::write(r.join("run.sh"), "#!/bin/sh\n").unwrap();
    chown(r.join("run.sh"), Some(1000), Some(1000)).unwrap();
    fs::set_permissions(r.join("run.sh"), fs::Permissions::from_mode(0o4755)).unwrap();
    chown(r.join("src"), Some(1000), Some(1000)).unwrap();
    symlink("/etc/passwd", r.join("abs-link")).unwrap();
    symlink("src", r.join("src-link")).unwrap();
    fs::hard_link(r.join("src/main.rs"), r.join("hard.rs")).unwrap();
    set_file_mtime(
        r.join("src/main.rs"),
        FileTime::from_unix_time(1_500_000_000, 0),
    )
    .unwrap();
    set_file_mtime(r.join("src"), FileTime::from_unix_time(1_400_000_000, 0)).unwrap();
    let _sock = UnixListener::bind(r.join("agent.sock")).unwrap();
    t
}

fn sync(src: &Path, filter: &ContextFilter) -> (tempfile::TempDir, kiln_fileop::SyncStats) {
    let dst = tempfile::tempdir().unwrap();
    let stats = sync_context(src, dst.path(), filter).unwrap();
    (dst, stats)
}

#[test]
fn sends_files_as_the_client_does() {
    let c = client_dir();
    let (d, stats) = sync(c.path(), &ContextFilter::default());
    let r = d.path();
    let m = fs::symlink_metadata(r.join("run.sh")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 0, 0o4755));
    let m = fs::symlink_metadata(r.join("src")).unwrap();
    assert_eq!((m.uid(), m.gid()), (0, 0));
    assert_eq!(
        m.mtime(),
        1_400_000_000,
        "dir mtime kept after its children"
    );
    let m = fs::symlink_metadata(r.join("src/main.rs")).unwrap();
    assert_eq!(m.mtime(), 1_500_000_000);
    assert_eq!(
        fs::read_link(r.join("abs-link")).unwrap().to_str(),
        Some("/etc/passwd")
    );
    assert!(
        fs::symlink_metadata(r.join("src-link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(!r.join("agent.sock").exists(), "sockets are not sent");
    let a = fs::metadata(r.join("src/main.rs")).unwrap();
    let b = fs::metadata(r.join("hard.rs")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard link kept");
    assert_eq!(stats.symlinks, 2);
    assert_eq!(stats.files, 6);
    assert_eq!(stats.skipped, 1);
    assert_eq!(stats.reused, 0);
}

#[test]
fn checksum_follows_content_not_times() {
    let c = client_dir();
    let sum = |d: &tempfile::TempDir| checksum(d.path(), "/", &ChecksumOpts::default()).unwrap();
    let (d1, _) = sync(c.path(), &ContextFilter::default());
    set_file_mtime(c.path().join("run.sh"), FileTime::from_unix_time(1, 0)).unwrap();
    let (d2, _) = sync(c.path(), &ContextFilter::default());
    assert_eq!(sum(&d1), sum(&d2));
    fs::write(c.path().join("src/deep/keep.txt"), "changed\n").unwrap();
    let (d3, _) = sync(c.path(), &ContextFilter::default());
    assert_ne!(sum(&d1), sum(&d3));
}

#[test]
fn exclude_closures() {
    let c = client_dir();
    // node_modules and logs/ excluded; logs may not be skipped because of
    // an exception (!logs/keep.log) that matches nothing here.
    let filter = ContextFilter {
        exclude: Some(Box::new(|p: &str, _| {
            p == "node_modules" || p.starts_with("logs") || p.ends_with(".rs")
        })),
        may_skip_dir: Some(Box::new(|p: &str| p == "node_modules")),
        ..ContextFilter::default()
    };
    let (d, _) = sync(c.path(), &filter);
    let r = d.path();
    assert!(!r.join("node_modules").exists());
    assert!(
        !r.join("logs").exists(),
        "an excluded dir with nothing sent in it"
    );
    assert!(!r.join("src/main.rs").exists());
    assert!(r.join("src/deep/keep.txt").exists());
    assert!(r.join("run.sh").exists());
    // An exception inside an excluded dir brings the file and its parents.
    let filter = ContextFilter {
        exclude: Some(Box::new(|p: &str, _| {
            p.starts_with("src") && p != "src/deep/keep.txt"
        })),
        may_skip_dir: Some(Box::new(|_: &str| false)),
        ..ContextFilter::default()
    };
    let (d, _) = sync(c.path(), &filter);
    assert!(d.path().join("src/deep/keep.txt").exists());
    assert!(!d.path().join("src/main.rs").exists());
    let m = fs::symlink_metadata(d.path().join("src")).unwrap();
    assert_eq!(
        m.mode() & 0o7777,
        fs::metadata(c.path().join("src")).unwrap().mode() & 0o7777
    );
}

#[test]
fn follow_paths_and_include_patterns() {
    let c = client_dir();
    let filter = ContextFilter {
        follow_paths: vec!["src-link/deep/keep.txt".into(), "run.sh".into()],
        ..ContextFilter::default()
    };
    let (d, _) = sync(c.path(), &filter);
    let r = d.path();
    assert!(
        fs::symlink_metadata(r.join("src-link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        r.join("src/deep/keep.txt").exists(),
        "symlink target followed"
    );
    assert!(r.join("run.sh").exists());
    assert!(!r.join("src/main.rs").exists());
    assert!(!r.join("logs").exists());
    let filter = ContextFilter {
        include_patterns: vec!["src/**/*.txt".into(), "logs".into()],
        ..ContextFilter::default()
    };
    let (d, _) = sync(c.path(), &filter);
    let r = d.path();
    assert!(r.join("src/deep/keep.txt").exists());
    assert!(r.join("logs/a.log").exists());
    assert!(!r.join("src/main.rs").exists());
    assert!(!r.join("run.sh").exists());
}
