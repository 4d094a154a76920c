//! write_layer -> apply_layer keeps every kind of entry and its metadata.

use crate::require_root;
use crate::util::*;
use kiln_oci::layer::{apply_layer, compress_layer, decompress, write_layer};
use rustix::fs::FileType;
use std::io::Read;
use std::path::Path;

/// security.capability v2 granting cap_net_bind_service (bit 10), permitted + effective.
const CAP_NET_BIND: [u8; 20] = [1, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

const LONG: &[u8] = b"long/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

/// An upper dir with every entry type our layers carry.
fn build_tree(root: &Path) {
    for d in [
        &b"bin"[..],
        b"etc",
        b"dev",
        b"opaque",
        b"sticky",
        b"long",
        b"ids",
    ] {
        std::fs::create_dir(p(root, d)).unwrap();
    }
    file(root, b"bin/tool", b"#!/bin/sh\necho tool\n", 0o755);
    chown(&p(root, b"bin/tool"), 1000, 1000);
    crate::util::chmod(&p(root, b"bin/tool"), 0o4755);
    xattr::set(p(root, b"bin/tool"), "security.capability", &CAP_NET_BIND).unwrap();
    std::fs::hard_link(p(root, b"bin/tool"), p(root, b"bin/tool-hard")).unwrap();
    file(root, b"bin/sgid", b"", 0o2711);

    crate::util::chmod(&p(root, b"etc"), 0o750);
    chown(&p(root, b"etc"), 1, 2);
    xattr::set(p(root, b"etc"), "user.note", b"kept").unwrap();
    file(root, b"etc/passwd", b"root:x:0:0::/root:/bin/sh\n", 0o644);
    xattr::set(p(root, b"etc/passwd"), "trusted.kiln", b"also kept").unwrap();
    std::os::unix::fs::symlink("../bin/tool", p(root, b"etc/link")).unwrap();
    std::os::unix::fs::symlink("/nowhere/at/all", p(root, b"etc/dangling")).unwrap();

    mknod(
        &p(root, b"dev/null"),
        FileType::CharacterDevice,
        0o666,
        1,
        3,
    );
    mknod(&p(root, b"dev/sda"), FileType::BlockDevice, 0o660, 8, 0);
    chown(&p(root, b"dev/sda"), 0, 6);
    mknod(&p(root, b"dev/fifo"), FileType::Fifo, 0o600, 0, 0);
    std::os::unix::net::UnixListener::bind(p(root, b"dev/sock")).unwrap();

    // overlayfs markers: a whiteout device and an opaque directory.
    mknod(&p(root, b"deleted"), FileType::CharacterDevice, 0, 0, 0);
    xattr::set(p(root, b"opaque"), "trusted.overlay.opaque", b"y").unwrap();
    file(root, b"opaque/keep", b"new", 0o600);
    mknod(&p(root, b"opaque/gone"), FileType::CharacterDevice, 0, 0, 0);

    crate::util::chmod(&p(root, b"sticky"), 0o1777);
    file(root, LONG, b"long name", 0o644);
    file(root, b"long/bad-\xff-name", b"not utf-8", 0o644);
    file(root, b"ids/big", b"big ids", 0o640);
    chown(&p(root, b"ids/big"), 3_000_000, 4_000_000);
    file(root, b"empty", b"", 0o444);

    // Fixed mtimes, children before parents so the parents keep theirs.
    let snap = snapshot(root, true);
    for (i, rel) in snap.keys().rev().enumerate() {
        mtime(&p(root, rel), 1_600_000_000 + i as i64);
    }
}

#[test]
fn round_trip_keeps_everything() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let dst = tmp.path().join("dst");
    std::fs::create_dir(&src).unwrap();
    std::fs::create_dir(&dst).unwrap();
    build_tree(&src);

    let mut tar = Vec::new();
    let stats = write_layer(&src, &mut tar).unwrap();
    assert_eq!(stats.tar_size, tar.len() as u64);
    assert_eq!(stats.whiteouts, 3, "two whiteouts and one opaque marker");

    let names: Vec<String> = tar_names(&tar)
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    let pos = |n: &str| {
        names
            .iter()
            .position(|x| x == n)
            .unwrap_or_else(|| panic!("{n} missing from {names:?}"))
    };
    assert_eq!(names[0], "bin/");
    assert!(pos("bin/") < pos("bin/sgid") && pos("bin/sgid") < pos("bin/tool"));
    assert!(pos("bin/tool") < pos("bin/tool-hard"));
    assert!(pos("opaque/") < pos("opaque/.wh..wh..opq"));
    pos(".wh.deleted");
    pos("opaque/.wh.gone");
    assert!(
        !names.iter().any(|n| n.contains("sock")),
        "sockets are skipped"
    );

    let applied = apply_layer(&tar[..], &dst).unwrap();
    assert_eq!(applied.whiteouts, 2);
    assert_eq!(applied.opaque_dirs, 1);

    let mut want = snapshot(&src, false);
    want.remove(&b"dev/sock"[..]);
    let mut got = snapshot(&dst, false);
    // Whiteouts are written with mtime 0, as containerd 2 does; their own mtime is not kept.
    for m in want.values_mut().chain(got.values_mut()) {
        if m.kind == "char" && m.rdev == 0 {
            m.mtime = None;
        }
    }
    assert_eq!(
        want.keys().collect::<Vec<_>>(),
        got.keys().collect::<Vec<_>>()
    );
    for (k, w) in &want {
        assert_eq!(Some(w), got.get(k), "{}", String::from_utf8_lossy(k));
    }
}

#[test]
fn same_tree_gives_same_bytes() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_tree(&src);

    let (mut a, mut b) = (Vec::new(), Vec::new());
    write_layer(&src, &mut a).unwrap();
    write_layer(&src, &mut b).unwrap();
    assert_eq!(a, b);

    let mut blob1 = Vec::new();
    let l1 = compress_layer(&src, &mut blob1).unwrap();
    let mut blob2 = Vec::new();
    let l2 = compress_layer(&src, &mut blob2).unwrap();
    assert_eq!(l1, l2);
    assert_eq!(blob1, blob2);
    assert_eq!(l1.diff_id, kiln_oci::sha256_digest(&a));
    assert_eq!(l1.digest, kiln_oci::sha256_digest(&blob1));
    assert_eq!(l1.size, blob1.len() as u64);
    assert_eq!(l1.media_type, kiln_oci::media_types::OCI_LAYER_GZIP);

    // decompress sniffs gzip and plain tar alike.
    let mut plain = Vec::new();
    decompress(&blob1[..])
        .unwrap()
        .read_to_end(&mut plain)
        .unwrap();
    assert_eq!(plain, a);
    let mut again = Vec::new();
    decompress(&a[..]).unwrap().read_to_end(&mut again).unwrap();
    assert_eq!(again, a);

    // A metadata change changes the diff_id.
    mtime(&p(&src, b"empty"), 5);
    let mut blob3 = Vec::new();
    assert_ne!(
        compress_layer(&src, &mut blob3).unwrap().diff_id,
        l1.diff_id
    );
}

#[test]
fn gnu_tar_reads_what_we_write() {
    require_root!();
    if std::process::Command::new("tar")
        .arg("--version")
        .output()
        .is_err()
    {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).unwrap();
    build_tree(&src);
    let tar_path = tmp.path().join("l.tar");
    write_layer(&src, std::fs::File::create(&tar_path).unwrap()).unwrap();
    let out = std::process::Command::new("tar")
        .arg("-tvf")
        .arg(&tar_path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(listing.contains("1000/1000"), "{listing}");
    assert!(listing.contains("3000000/4000000"), "{listing}");
    assert!(
        listing.contains(&String::from_utf8_lossy(LONG).into_owned()),
        "{listing}"
    );
}
