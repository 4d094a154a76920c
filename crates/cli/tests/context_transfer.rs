//! Incremental build-context transfer end to end: a rebuild of an unchanged context reuses the
//! previous transfer's layer, a changed context copies only what changed (the rest are hard
//! links to the previous layer), every change gives the image and context layer a fresh store
//! gives, COPY checksums are remembered, and crashes mid-transfer leave a store that builds.
//!
//! Observed through the store's files (layer directories, inodes, link counts) and progress
//! lines, never through timing.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// A named change to a client directory.
type Change<'a> = (&'a str, Box<dyn Fn() + 'a>);

/// `COPY . /` makes no directory of its own, so its layer is the same whenever it is built.
const DOCKERFILE: &str = "FROM scratch\nCOPY . /\n";

/// A context of `n` files in four directories.
fn project(n: usize) -> Project {
    let p = Project::new(DOCKERFILE, &[]);
    for i in 0..n {
        p.write(
            &format!("d{}/f{i:03}.txt", i % 4),
            &format!("file {i}\n").repeat(i + 1),
        );
    }
    p
}

/// Layer directories of the store that hold a context transfer (they have a manifest).
fn context_layers(s: &Store) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(s.root().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("context.manifest").exists())
        .map(|p| p.join("fs"))
        .collect();
    v.sort();
    v
}

/// The context layer made last (a store keeps one per .dockerignore, a few at most).
fn newest_context_layer(s: &Store) -> PathBuf {
    context_layers(s)
        .into_iter()
        .max_by_key(|l| {
            let m = fs::metadata(l.with_file_name("context.manifest")).unwrap();
            (m.mtime(), m.mtime_nsec())
        })
        .expect("a context layer")
}

/// The only context layer of the store.
#[track_caller]
fn context_layer(s: &Store) -> PathBuf {
    let v = context_layers(s);
    assert_eq!(v.len(), 1, "one context layer: {v:?}");
    v.into_iter().next().unwrap()
}

/// Relative path -> inode of every file below `root`.
fn inodes(root: &Path) -> BTreeMap<String, u64> {
    walk(root)
        .into_iter()
        .filter(|p| fs::symlink_metadata(p).unwrap().is_file())
        .map(|p| {
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            (rel, fs::symlink_metadata(&p).unwrap().ino())
        })
        .collect()
}

fn walk(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// Everything a context copy must reproduce, per path: type, mode, owner, size, mtime (ns),
/// content or link target, xattrs, and the first path sharing its inode.
fn tree(root: &Path) -> BTreeMap<String, String> {
    let mut first_of: BTreeMap<u64, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for p in walk(root) {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        let what = if m.file_type().is_symlink() {
            format!("link {:?}", fs::read_link(&p).unwrap())
        } else if m.is_dir() {
            "dir".into()
        } else {
            let first = first_of.entry(m.ino()).or_insert(rel.clone()).clone();
            format!("file {:?} first {first}", fs::read(&p).unwrap())
        };
        let mut xattrs: Vec<String> = xattr::list(&p)
            .map(|names| {
                names
                    .map(|n| format!("{n:?}={:?}", xattr::get(&p, &n).ok().flatten()))
                    .collect()
            })
            .unwrap_or_default();
        xattrs.sort();
        let size = if m.is_dir() { 0 } else { m.size() };
        let line = format!(
            "{what} {:o} {}:{} {size} {}.{:09} {xattrs:?}",
            m.mode(),
            m.uid(),
            m.gid(),
            m.mtime(),
            m.mtime_nsec()
        );
        out.insert(rel, line);
    }
    out
}

/// The layer digests of an OCI tar's image.
fn layer_digests(image: &Path) -> Vec<String> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut a = tar::Archive::new(fs::File::open(image).unwrap());
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut v = Vec::new();
        e.read_to_end(&mut v).unwrap();
        files.insert(name, v);
    }
    let json = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&files[name]).unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let blob = |d: &serde_json::Value| format!("blobs/sha256/{}", &d.as_str().unwrap()[7..]);
    let index = json("index.json");
    let manifest = json(&blob(&index["manifests"][0]["digest"]));
    manifest["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["digest"].as_str().unwrap().to_string())
        .collect()
}

/// Builds on `s` and on a fresh store; the images' layers and the context layers must be the
/// same. Returns the build's stderr.
#[track_caller]
fn build_same_as_fresh(p: &Project, s: &Store, what: &str) -> String {
    build_compared(p, s, what, true)
}

#[track_caller]
fn build_compared(p: &Project, s: &Store, what: &str, image: bool) -> String {
    let r = p.build(s, "out.tar", &[]);
    r.assert_ok();
    let fresh = Store::new();
    p.build(&fresh, "fresh.tar", &[]).assert_ok();
    assert_eq!(
        tree(&newest_context_layer(s)),
        tree(&context_layer(&fresh)),
        "{what}: context layer"
    );
    if image {
        assert_eq!(
            layer_digests(&p.out("out.tar")),
            layer_digests(&p.out("fresh.tar")),
            "{what}: image layers"
        );
    }
    s.assert_no_mounts();
    s.assert_no_temp_files();
    r.stderr
}

/// `transferring context: N bytes copied, R of F files unchanged` -> (N, R, F).
#[track_caller]
fn transfer_line(stderr: &str) -> (u64, u64, u64) {
    let line = stderr
        .lines()
        .find_map(|l| l.split_once("transferring context: ").map(|(_, r)| r))
        .unwrap_or_else(|| panic!("no transfer line in:\n{stderr}"));
    let n: Vec<u64> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
    assert_eq!(n.len(), 3, "{line}");
    (n[0], n[1], n[2])
}

fn reused_whole(stderr: &str) -> bool {
    stderr.contains("transferring context: unchanged, reusing the previous transfer")
}

#[test]
fn an_unchanged_context_reuses_the_previous_transfer() {
    let p = project(200);
    let s = Store::new();
    let r = p.build(&s, "one.tar", &[]);
    r.assert_ok();
    assert_eq!(transfer_line(&r.stderr).1, 0, "nothing to reuse at first");
    let layer = context_layer(&s);
    let before = inodes(&layer);
    let r = p.build(&s, "two.tar", &[]);
    r.assert_ok();
    assert!(reused_whole(&r.stderr), "{}", r.stderr);
    assert_eq!(context_layer(&s), layer, "the same layer");
    assert_eq!(inodes(&layer), before, "not a single file made anew");
    assert!(
        steps(&r.stderr)
            .iter()
            .any(|(name, cached)| name.contains("COPY . /") && *cached),
        "{}",
        r.stderr
    );
    assert_eq!(
        layer_digests(&p.out("one.tar")),
        layer_digests(&p.out("two.tar"))
    );
}

#[test]
fn one_changed_file_is_the_only_file_copied() {
    let p = project(200);
    let s = Store::new();
    p.build(&s, "one.tar", &[]).assert_ok();
    let old = context_layer(&s);
    let before = inodes(&old);
    p.write("d1/f005.txt", "changed\n");
    let stderr = build_same_as_fresh(&p, &s, "one file changed");
    // 200 files and the Dockerfile; only the changed file's bytes travel.
    assert_eq!(transfer_line(&stderr), (8, 200, 201));
    let new = context_layer(&s);
    assert_ne!(new, old);
    assert!(
        !old.exists(),
        "the replaced transfer is removed after the build"
    );
    let after = inodes(&new);
    assert_eq!(after.len(), before.len());
    for (rel, ino) in &after {
        if rel == "d1/f005.txt" {
            assert_ne!(*ino, before[rel], "{rel} is a new file");
        } else {
            assert_eq!(*ino, before[rel], "{rel} is the previous transfer's file");
        }
        let links = fs::symlink_metadata(new.join(rel)).unwrap().nlink();
        assert_eq!(links, 1, "{rel}: the previous layer's link is gone");
    }
}

#[test]
fn every_change_gives_what_a_fresh_store_gives() {
    let p = project(24);
    let c = p.ctx();
    let s = Store::new();
    p.build(&s, "out.tar", &[]).assert_ok();
    let steps: Vec<Change> = vec![
        (
            "delete",
            Box::new(|| fs::remove_file(c.join("d0/f004.txt")).unwrap()),
        ),
        (
            "add",
            Box::new(|| fs::write(c.join("d1/new.txt"), "new\n").unwrap()),
        ),
        (
            "chmod",
            Box::new(|| {
                fs::set_permissions(c.join("d2/f006.txt"), fs::Permissions::from_mode(0o750))
                    .unwrap()
            }),
        ),
        (
            "file to directory",
            Box::new(|| {
                fs::remove_file(c.join("d3/f007.txt")).unwrap();
                fs::create_dir(c.join("d3/f007.txt")).unwrap();
                fs::write(c.join("d3/f007.txt/inside"), "inside\n").unwrap();
            }),
        ),
        (
            "file to symlink",
            Box::new(|| {
                fs::remove_file(c.join("d0/f008.txt")).unwrap();
                symlink("f000.txt", c.join("d0/f008.txt")).unwrap();
            }),
        ),
        (
            "hard link",
            Box::new(|| fs::hard_link(c.join("d1/f001.txt"), c.join("d1/zz-link")).unwrap()),
        ),
        (
            "xattr",
            Box::new(|| xattr::set(c.join("d2/f002.txt"), "user.k", b"v").unwrap()),
        ),
        (
            ".dockerignore",
            Box::new(|| fs::write(c.join(".dockerignore"), "d2\n").unwrap()),
        ),
        (
            ".dockerignore changed again",
            Box::new(|| fs::write(c.join(".dockerignore"), "d3\n*/f01*\n").unwrap()),
        ),
        (
            "touched",
            Box::new(|| {
                let f = fs::File::options()
                    .append(true)
                    .open(c.join("d0/f000.txt"))
                    .unwrap();
                f.set_modified(std::time::SystemTime::now()).unwrap();
            }),
        ),
    ];
    for (what, step) in steps {
        step();
        // COPY's content checksum leaves times out (as BuildKit's does) and xattrs (BuildKit's
        // covers them), so on a store that has the COPY cached such a change alone keeps the
        // old COPY layer, before and after incremental transfers alike. The context layer must
        // be exact all the same.
        let image = !matches!(what, "xattr" | "touched");
        let stderr = build_compared(&p, &s, what, image);
        let (_, reused, _) = transfer_line(&stderr);
        assert!(reused > 0, "{what}: unchanged files were reused:\n{stderr}");
        // And the next build finds nothing changed.
        let r = p.build(&s, "again.tar", &[]);
        r.assert_ok();
        assert!(
            reused_whole(&r.stderr),
            "{what}: then unchanged:\n{}",
            r.stderr
        );
    }
    // Every .dockerignore keeps a transfer of its own, a few at most.
    for i in 0..6 {
        fs::write(c.join(".dockerignore"), format!("d0/f00{i}.txt\n")).unwrap();
        p.build(&s, "out.tar", &[]).assert_ok();
    }
    assert_eq!(context_layers(&s).len(), 4);
}

#[test]
fn copy_checksums_are_remembered() {
    let p = project(8);
    let s = Store::new();
    p.build(&s, "one.tar", &[]).assert_ok();
    // Alter the stored copy behind the store's back (same size): a rebuild that read the
    // context again would compute another checksum and run the COPY again.
    let f = context_layer(&s).join("d0/f000.txt");
    let len = fs::metadata(&f).unwrap().len() as usize;
    fs::write(&f, "X".repeat(len)).unwrap();
    let r = p.build(&s, "two.tar", &[]);
    r.assert_ok();
    assert!(reused_whole(&r.stderr), "{}", r.stderr);
    assert!(
        steps(&r.stderr)
            .iter()
            .any(|(name, cached)| name.contains("COPY . /") && *cached),
        "the COPY key came from the remembered checksum:\n{}",
        r.stderr
    );
}

/// Layer directories in the store: after the crash tests' builds, the context layer and the
/// COPY's layers for the old and the new context.
fn layer_count(s: &Store) -> usize {
    fs::read_dir(s.root().join("snapshots")).unwrap().count()
}

/// Builds once, changes a file, crashes the next build at `failpoint`, and checks the store
/// then builds what a fresh store builds.
fn crash_at(failpoint: &str) -> (Project, Store, PathBuf) {
    let p = project(40);
    let s = Store::new();
    p.build(&s, "out.tar", &[]).assert_ok();
    let old = context_layer(&s);
    p.write("d2/f010.txt", "changed before the crash\n");
    build_aborting_at(&p, &s, failpoint);
    (p, s, old)
}

#[test]
fn a_crash_mid_transfer_leaves_a_store_that_builds() {
    let (p, s, old) = crash_at("context-transfer-mid");
    let stderr = build_same_as_fresh(&p, &s, "after the crash");
    // The half-made layer is gone; the new transfer started from the old one.
    let (_, reused, files) = transfer_line(&stderr);
    assert_eq!((reused, files), (40, 41));
    assert!(!old.exists());
    assert_eq!(layer_count(&s), 3, "no leftover layers");
}

#[test]
fn a_crash_before_the_record_keeps_the_old_transfer() {
    let (p, s, old) = crash_at("local-before-commit");
    assert!(old.exists());
    let stderr = build_same_as_fresh(&p, &s, "after the crash");
    assert_eq!(transfer_line(&stderr).1, 40);
    assert_eq!(layer_count(&s), 3, "no leftover layers");
}

#[test]
fn a_crash_after_the_record_keeps_the_new_transfer() {
    let (p, s, old) = crash_at("local-after-commit");
    // The new transfer was recorded: the next build reuses it whole and retires the old one.
    let stderr = build_same_as_fresh(&p, &s, "after the crash");
    assert!(reused_whole(&stderr), "{stderr}");
    assert!(!old.exists());
    assert_eq!(layer_count(&s), 3, "no leftover layers");
}

#[test]
fn odd_names_and_special_files() {
    let p = project(4);
    let c = p.ctx();
    let s = Store::new();
    let odd = std::ffi::OsStr::from_bytes(b"caf\xe9 \xff.txt");
    fs::write(c.join(odd), "latin-1 name\n").unwrap();
    fs::write(c.join("caf\u{e9} \u{fffd}.txt"), "its lossy twin\n").unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(c.join("agent.sock")).unwrap();
    build_same_as_fresh(&p, &s, "first");
    fs::write(c.join(odd), "latin-1 name, changed\n").unwrap();
    let stderr = build_same_as_fresh(&p, &s, "a file with a non-UTF-8 name changed");
    assert_eq!(transfer_line(&stderr).1, 6);
}
