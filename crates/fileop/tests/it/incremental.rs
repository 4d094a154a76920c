//! Incremental context transfers: a copy that remembers what it sent (a manifest), the check
//! that nothing changed, and new copies that hard-link unchanged files from the previous one.
//! Every incremental copy is compared with a fresh copy of the same client directory.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use filetime::{FileTime, set_file_mtime, set_symlink_file_times};
use kiln_fileop::{
    ContextFilter, Previous, SyncStats, context_unchanged, manifest_valid, sync_context,
    sync_context_incremental,
};

/// A named change to a client directory.
type Change<'a> = (&'a str, Box<dyn Fn() + 'a>);

/// One transfer: the copy (`fs`) and its manifest, as the store keeps them.
struct Copy {
    dir: tempfile::TempDir,
    digest: String,
    stats: SyncStats,
}

impl Copy {
    fn fs(&self) -> PathBuf {
        self.dir.path().join("fs")
    }

    fn manifest(&self) -> PathBuf {
        self.dir.path().join("context.manifest")
    }

    fn unchanged(&self, src: &Path, filter: &ContextFilter) -> bool {
        context_unchanged(src, filter, &self.manifest(), &self.digest).unwrap()
    }
}

fn transfer(src: &Path, filter: &ContextFilter, previous: Option<&Copy>) -> Copy {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("fs")).unwrap();
    let (fs_dir, manifest) = (dir.path().join("fs"), dir.path().join("context.manifest"));
    let prev_paths = previous.map(|p| (p.fs(), p.manifest()));
    let prev = prev_paths
        .as_ref()
        .map(|(dir, manifest)| Previous { dir, manifest });
    let (stats, digest) = sync_context_incremental(src, &fs_dir, filter, prev, &manifest).unwrap();
    assert!(manifest_valid(&manifest, &digest));
    Copy { dir, digest, stats }
}

/// Everything about a tree that a copy must reproduce: per path its type, mode, owner, size,
/// mtime, content or link target, user xattrs, and which earlier path it shares an inode with.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, String> = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    let mut paths = Vec::new();
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            paths.push(p);
        }
    }
    paths.sort();
    for p in paths {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let what = if m.file_type().is_symlink() {
            format!("link {:?}", fs::read_link(&p).unwrap())
        } else if m.is_dir() {
            "dir".to_string()
        } else {
            let first = inodes.entry(m.ino()).or_insert_with(|| rel.clone()).clone();
            format!("file {:?} inode-of {first}", fs::read(&p).unwrap())
        };
        let mut xattrs: Vec<String> = xattr::list(&p)
            .unwrap()
            .filter(|n| n.as_bytes().starts_with(b"user."))
            .map(|n| format!("{n:?}={:?}", xattr::get(&p, &n).unwrap()))
            .collect();
        xattrs.sort();
        let size = if m.is_dir() { 0 } else { m.size() };
        out.insert(
            rel,
            format!(
                "{what} mode {:o} owner {}:{} size {size} mtime {}.{:09} xattrs {xattrs:?}",
                m.mode(),
                m.uid(),
                m.gid(),
                m.mtime(),
                m.mtime_nsec()
            ),
        );
    }
    out
}

/// The incremental copy gives exactly what a fresh copy of the client gives.
#[track_caller]
fn assert_same_as_fresh(copy: &Copy, src: &Path, filter: &ContextFilter) {
    let fresh = tempfile::tempdir().unwrap();
    sync_context(src, fresh.path(), filter).unwrap();
    assert_eq!(tree(&copy.fs()), tree(fresh.path()));
}

fn ino(p: &Path) -> u64 {
    fs::symlink_metadata(p).unwrap().ino()
}

/// A client directory of `n` files in a few directories, with fixed mtimes.
fn client(n: usize) -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    for i in 0..n {
        let p = t.path().join(format!("d{}/f{i:03}.txt", i % 4));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, format!("file {i}\n").repeat(i + 1)).unwrap();
        set_file_mtime(&p, FileTime::from_unix_time(1_600_000_000 + i as i64, 7)).unwrap();
    }
    symlink("d0/f000.txt", t.path().join("link")).unwrap();
    fs::hard_link(t.path().join("d1/f001.txt"), t.path().join("hard.txt")).unwrap();
    xattr::set(t.path().join("d2/f002.txt"), "user.note", b"kept").unwrap();
    fs::set_permissions(t.path().join("d3"), fs::Permissions::from_mode(0o750)).unwrap();
    t
}

#[test]
fn an_unchanged_context_is_recognised_and_any_change_is_not() {
    let c = client(12);
    let f = ContextFilter::default();
    let first = transfer(c.path(), &f, None);
    assert_eq!(first.stats.reused, 0);
    assert!(first.unchanged(c.path(), &f));
    // A manifest that does not match its digest is never trusted.
    assert!(!context_unchanged(c.path(), &f, &first.manifest(), "0").unwrap());
    let p = c.path().join("d1/f005.txt");
    let changes: Vec<Change> = vec![
        (
            "mtime",
            Box::new(|| set_file_mtime(&p, FileTime::from_unix_time(1, 0)).unwrap()),
        ),
        (
            "mode",
            Box::new(|| fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap()),
        ),
        (
            "xattr",
            Box::new(|| xattr::set(&p, "user.x", b"1").unwrap()),
        ),
        (
            "dir mtime",
            Box::new(|| {
                set_file_mtime(c.path().join("d1"), FileTime::from_unix_time(5, 0)).unwrap()
            }),
        ),
        (
            "link target",
            Box::new(|| {
                let l = c.path().join("link");
                let m = fs::symlink_metadata(&l).unwrap();
                fs::remove_file(&l).unwrap();
                symlink("d0/f004.txt", &l).unwrap();
                let t = FileTime::from_last_modification_time(&m);
                set_symlink_file_times(&l, t, t).unwrap();
            }),
        ),
        (
            "hard link",
            Box::new(|| {
                fs::remove_file(c.path().join("hard.txt")).unwrap();
                fs::hard_link(c.path().join("d0/f000.txt"), c.path().join("hard.txt")).unwrap();
            }),
        ),
        (
            "new file",
            Box::new(|| fs::write(c.path().join("d0/new"), "").unwrap()),
        ),
    ];
    for (what, change) in changes {
        let before = transfer(c.path(), &f, None);
        assert!(before.unchanged(c.path(), &f), "{what}: before");
        change();
        assert!(!before.unchanged(c.path(), &f), "{what}: a change");
    }
    // Other filters send something else.
    let only = ContextFilter {
        include_patterns: vec!["d0".into()],
        ..ContextFilter::default()
    };
    let all = transfer(c.path(), &f, None);
    assert!(!all.unchanged(c.path(), &only));
}

#[test]
fn one_changed_file_is_the_only_one_copied() {
    let c = client(40);
    let f = ContextFilter::default();
    let first = transfer(c.path(), &f, None);
    fs::write(c.path().join("d2/f010.txt"), "changed\n").unwrap();
    let second = transfer(c.path(), &f, Some(&first));
    // 40 files plus hard.txt; hard.txt follows its first link (d1/f001.txt), which is reused.
    assert_eq!(second.stats.files, 41);
    assert_eq!(second.stats.reused, 39);
    assert_eq!(second.stats.bytes, "changed\n".len() as u64);
    for rel in [
        "d0/f000.txt",
        "d1/f001.txt",
        "hard.txt",
        "d2/f002.txt",
        "d3/f039.txt",
    ] {
        assert_eq!(
            ino(&second.fs().join(rel)),
            ino(&first.fs().join(rel)),
            "{rel}"
        );
    }
    let changed = second.fs().join("d2/f010.txt");
    assert_ne!(ino(&changed), ino(&first.fs().join("d2/f010.txt")));
    assert_eq!(fs::symlink_metadata(&changed).unwrap().nlink(), 1);
    let unchanged = fs::symlink_metadata(second.fs().join("d0/f004.txt")).unwrap();
    assert_eq!(unchanged.nlink(), 2, "one link in each copy");
    // Symlinks and directories are always made anew.
    assert_ne!(
        ino(&second.fs().join("link")),
        ino(&first.fs().join("link"))
    );
    assert_same_as_fresh(&second, c.path(), &f);
    // Once the previous copy is gone, the new one stands alone.
    drop(first);
    let unchanged = fs::symlink_metadata(second.fs().join("d0/f004.txt")).unwrap();
    assert_eq!(unchanged.nlink(), 1);
    assert_same_as_fresh(&second, c.path(), &f);
}

#[test]
fn every_kind_of_change_gives_what_a_fresh_copy_gives() {
    let c = client(16);
    let r = c.path().to_path_buf();
    let steps: Vec<Change> = vec![
        (
            "delete",
            Box::new(|| fs::remove_file(r.join("d0/f004.txt")).unwrap()),
        ),
        (
            "add",
            Box::new(|| fs::write(r.join("d1/added"), "new\n").unwrap()),
        ),
        (
            "chmod",
            Box::new(|| {
                fs::set_permissions(r.join("d1/f005.txt"), fs::Permissions::from_mode(0o4711))
                    .unwrap()
            }),
        ),
        (
            "file to dir",
            Box::new(|| {
                fs::remove_file(r.join("d2/f006.txt")).unwrap();
                fs::create_dir(r.join("d2/f006.txt")).unwrap();
                fs::write(r.join("d2/f006.txt/inner"), "inner\n").unwrap();
            }),
        ),
        (
            "file to symlink",
            Box::new(|| {
                fs::remove_file(r.join("d3/f007.txt")).unwrap();
                symlink("../d0/f000.txt", r.join("d3/f007.txt")).unwrap();
            }),
        ),
        (
            "dir to file",
            Box::new(|| {
                fs::remove_dir_all(r.join("d2/f006.txt")).unwrap();
                fs::write(r.join("d2/f006.txt"), "file again\n").unwrap();
            }),
        ),
        (
            "same size and mtime, other mode bits",
            Box::new(|| {
                fs::set_permissions(r.join("d0/f008.txt"), fs::Permissions::from_mode(0o600))
                    .unwrap()
            }),
        ),
        (
            "xattr",
            Box::new(|| xattr::set(r.join("d2/f002.txt"), "user.note", b"other").unwrap()),
        ),
        (
            "hard links regrouped",
            Box::new(|| {
                // hard.txt leaves d1/f001.txt for a copy with the same stat: two inodes now.
                fs::remove_file(r.join("hard.txt")).unwrap();
                fs::copy(r.join("d1/f001.txt"), r.join("hard.txt")).unwrap();
                let t = FileTime::from_unix_time(1_600_000_001, 7);
                set_file_mtime(r.join("hard.txt"), t).unwrap();
                // and d0/f000.txt gains a second name.
                fs::hard_link(r.join("d0/f000.txt"), r.join("d0/zz-link")).unwrap();
            }),
        ),
        (
            "touched only",
            Box::new(|| {
                set_file_mtime(r.join("d1/f009.txt"), FileTime::from_unix_time(3, 0)).unwrap()
            }),
        ),
        (
            "a renamed directory",
            Box::new(|| fs::rename(r.join("d3"), r.join("d9")).unwrap()),
        ),
    ];
    let f = ContextFilter::default();
    let mut prev = transfer(&r, &f, None);
    for (what, step) in steps {
        step();
        let next = transfer(&r, &f, Some(&prev));
        assert!(next.stats.reused > 0, "{what}: unchanged files are reused");
        let fresh = tempfile::tempdir().unwrap();
        sync_context(&r, fresh.path(), &f).unwrap();
        assert_eq!(tree(&next.fs()), tree(fresh.path()), "{what}");
        assert!(
            next.unchanged(&r, &f),
            "{what}: recognised as unchanged after"
        );
        prev = next;
    }
}

#[test]
fn other_filters_reuse_files_and_send_what_they_select() {
    let c = client(16);
    let all = ContextFilter::default();
    let first = transfer(c.path(), &all, None);
    let ignore = ContextFilter {
        exclude: Some(Box::new(|p: &str, _| p.starts_with("d1") || p == "link")),
        ..ContextFilter::default()
    };
    let second = transfer(c.path(), &ignore, Some(&first));
    assert!(!second.fs().join("d1").exists());
    assert!(second.stats.reused > 0);
    assert_same_as_fresh(&second, c.path(), &ignore);
    let follow = ContextFilter {
        follow_paths: vec!["link".into(), "d2".into()],
        ..ContextFilter::default()
    };
    let third = transfer(c.path(), &follow, Some(&second));
    assert_same_as_fresh(&third, c.path(), &follow);
    assert_eq!(
        ino(&third.fs().join("d0/f000.txt")),
        ino(&first.fs().join("d0/f000.txt"))
    );
    let back = transfer(c.path(), &all, Some(&third));
    assert_same_as_fresh(&back, c.path(), &all);
}

#[test]
fn a_damaged_previous_manifest_reuses_nothing() {
    let c = client(8);
    let f = ContextFilter::default();
    let first = transfer(c.path(), &f, None);
    let m = fs::read(first.manifest()).unwrap();
    fs::write(first.manifest(), &m[..m.len() / 2]).unwrap();
    assert!(!manifest_valid(&first.manifest(), &first.digest));
    assert!(!first.unchanged(c.path(), &f));
    // Even used anyway, a truncated manifest ends reuse where it ends; the copy is whole.
    let second = transfer(c.path(), &f, Some(&first));
    assert!(second.stats.reused < second.stats.files);
    assert_same_as_fresh(&second, c.path(), &f);
}

/// The accepted limit, as in BuildKit's fsutil: new content with the same size and mtime is
/// not noticed. (This test pins the behaviour down so a change to it is deliberate.)
#[test]
fn same_size_and_mtime_is_taken_as_unchanged() {
    let c = client(4);
    let f = ContextFilter::default();
    let first = transfer(c.path(), &f, None);
    let p = c.path().join("d0/f000.txt");
    let m = fs::metadata(&p).unwrap();
    fs::write(&p, "FILE 0\n").unwrap();
    set_file_mtime(&p, FileTime::from_last_modification_time(&m)).unwrap();
    assert!(first.unchanged(c.path(), &f));
}
