//! Mount tests: these need root (CAP_SYS_ADMIN) and an overlay-capable kernel.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use kiln_snapshot::{Snapshotter, sweep};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn write(path: &Path, text: &str) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn is_whiteout(path: &Path) -> bool {
    let md = fs::symlink_metadata(path).unwrap();
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    xattr::get(path, "trusted.overlay.opaque")
        .unwrap()
        .as_deref()
        == Some(b"y".as_slice())
}

#[test]
fn two_lowers_and_an_upper_make_a_complete_diff() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(tmp.path()).unwrap();
    let bottom = s.new_layer().unwrap();
    let top = s.new_layer().unwrap();
    let upper = s.new_layer().unwrap();
    write(&bottom.dir.join("shared.txt"), "bottom");
    write(&bottom.dir.join("gone.txt"), "delete me");
    write(&bottom.dir.join("dir/old.txt"), "old");
    write(&bottom.dir.join("modify.txt"), "0123456789");
    write(&top.dir.join("shared.txt"), "top");

    let m = s
        .mount(&[top.dir.clone(), bottom.dir.clone()], Some(&upper))
        .unwrap();
    let merged = m.target().to_path_buf();
    assert!(merged.starts_with(s.root().join("mounts")));
    // The top-most lower wins.
    assert_eq!(
        fs::read_to_string(merged.join("shared.txt")).unwrap(),
        "top"
    );
    write(&merged.join("new.txt"), "new");
    fs::remove_file(merged.join("gone.txt")).unwrap();
    fs::remove_dir_all(merged.join("dir")).unwrap();
    fs::create_dir(merged.join("dir")).unwrap();
    write(&merged.join("dir/fresh.txt"), "fresh");
    {
        use std::io::Write;
        let mut f = fs::OpenOptions::new()
            .append(true)
            .open(merged.join("modify.txt"))
            .unwrap();
        f.write_all(b"!").unwrap();
    }
    m.unmount().unwrap();
    assert!(!merged.exists(), "the mountpoint is removed with the mount");

    let u = &upper.dir;
    assert_eq!(fs::read_to_string(u.join("new.txt")).unwrap(), "new");
    assert!(
        is_whiteout(&u.join("gone.txt")),
        "deleted lower file -> 0:0 char dev"
    );
    assert!(is_opaque(&u.join("dir")), "rm -rf + mkdir -> opaque dir");
    assert!(!u.join("dir/old.txt").exists());
    assert_eq!(
        fs::read_to_string(u.join("dir/fresh.txt")).unwrap(),
        "fresh"
    );
    // metacopy=off: the whole file is copied up, not just its metadata.
    assert_eq!(
        fs::read_to_string(u.join("modify.txt")).unwrap(),
        "0123456789!"
    );
    assert!(
        !u.join("shared.txt").exists(),
        "untouched files stay out of the diff"
    );
    // The lowers are untouched.
    assert_eq!(
        fs::read_to_string(bottom.dir.join("gone.txt")).unwrap(),
        "delete me"
    );
}

#[test]
fn single_lower_is_a_read_only_bind_and_upper_alone_is_writable() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(tmp.path()).unwrap();
    let base = s.new_layer().unwrap();
    write(&base.dir.join("a.txt"), "a");

    let ro = s.mount(std::slice::from_ref(&base.dir), None).unwrap();
    assert_eq!(fs::read_to_string(ro.target().join("a.txt")).unwrap(), "a");
    let err = fs::write(ro.target().join("b.txt"), "b").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc_erofs()));
    ro.unmount().unwrap();

    let scratch = s.new_layer().unwrap();
    let rw = s.mount(&[], Some(&scratch)).unwrap();
    write(&rw.target().join("c.txt"), "c");
    drop(rw); // Drop unmounts too.
    assert_eq!(fs::read_to_string(scratch.dir.join("c.txt")).unwrap(), "c");
}

fn libc_erofs() -> i32 {
    rustix::io::Errno::ROFS.raw_os_error()
}

#[test]
fn sixty_long_layers_still_mount() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    // A deliberately long root, so 60 lowerdirs overflow one page of options.
    let root = tmp
        .path()
        .join("a-rather-long-directory-name-to-make-paths-long".repeat(2));
    let s = Snapshotter::open(&root).unwrap();
    let mut lowers: Vec<PathBuf> = Vec::new();
    for i in 0..60 {
        let l = s.new_layer().unwrap();
        write(&l.dir.join(format!("f{i}")), &i.to_string());
        write(&l.dir.join("which"), &i.to_string());
        lowers.push(l.dir);
    }
    let total: usize = lowers.iter().map(|l| l.as_os_str().len() + 1).sum();
    assert!(
        total > 4096,
        "test setup: options must overflow a page ({total})"
    );
    lowers.reverse(); // layer 59 on top
    let upper = s.new_layer().unwrap();
    let m = s.mount(&lowers, Some(&upper)).unwrap();
    assert_eq!(fs::read_to_string(m.target().join("which")).unwrap(), "59");
    assert_eq!(fs::read_to_string(m.target().join("f0")).unwrap(), "0");
    fs::remove_file(m.target().join("f3")).unwrap();
    m.unmount().unwrap();
    assert!(is_whiteout(&upper.dir.join("f3")));

    // Read-only, too (no upper).
    let ro = s.mount(&lowers, None).unwrap();
    assert_eq!(fs::read_to_string(ro.target().join("f3")).unwrap(), "3");
    ro.unmount().unwrap();
}

#[test]
fn sweep_removes_a_dead_process_leftovers() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = Snapshotter::open(tmp.path()).unwrap();
    let a = s.new_layer().unwrap();
    let b = s.new_layer().unwrap();
    write(&a.dir.join("x"), "x");
    // Pretend a process that no longer exists mounted this (pid beyond pid_max).
    let stale = s.root().join("mounts/4194303999-0");
    fs::create_dir(&stale).unwrap();
    let leaked = kiln_snapshot::mount(&[a.dir.clone(), b.dir.clone()], None, &stale).unwrap();
    std::mem::forget(leaked);
    let empty = s.root().join("mounts/4194303999-1");
    fs::create_dir(&empty).unwrap();
    // A live mount of our own must survive the sweep.
    let live = s.mount(std::slice::from_ref(&a.dir), None).unwrap();

    let report = sweep(s.root()).unwrap();
    assert_eq!(report.unmounted, vec![stale.clone()]);
    assert_eq!(report.removed_dirs.len(), 2);
    assert!(!stale.exists() && !empty.exists());
    assert!(
        a.dir.join("x").exists(),
        "sweeping must not touch layer data"
    );
    assert_eq!(fs::read_to_string(live.target().join("x")).unwrap(), "x");
    live.unmount().unwrap();
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mountinfo.contains(s.root().to_str().unwrap()));
}
