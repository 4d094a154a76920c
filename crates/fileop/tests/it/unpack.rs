//! ADD's archive unpacking (`attempt_unpack_docker_compatibility`):
//! compressions, owners, merging, what is not an archive, hostile archives.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use kiln_fileop::{FileOpError, Owner, copy_action};
use kiln_proto::pb::FileActionCopy;

/// One raw tar member; names are written verbatim (`..`, absolute).
struct M<'a> {
    name: &'a str,
    kind: u8,
    link: &'a str,
    data: &'a [u8],
    mode: u32,
    uid: u64,
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> M<'a> {
    M {
        name,
        kind: b'0',
        link: "",
        data,
        mode: 0o644,
        uid: 0,
    }
}

fn dir(name: &str, mode: u32) -> M<'_> {
    M {
        name,
        kind: b'5',
        link: "",
        data: b"",
        mode,
        uid: 0,
    }
}

fn link<'a>(name: &'a str, kind: u8, target: &'a str) -> M<'a> {
    M {
        name,
        kind,
        link: target,
        data: b"",
        mode: 0o777,
        uid: 0,
    }
}

fn tar(members: &[M]) -> Vec<u8> {
    let mut out = Vec::new();
    for m in members {
        let mut h = tar::Header::new_ustar();
        h.as_old_mut().name[..m.name.len()].copy_from_slice(m.name.as_bytes());
        h.as_old_mut().linkname[..m.link.len()].copy_from_slice(m.link.as_bytes());
        h.set_entry_type(tar::EntryType::new(m.kind));
        h.set_mode(m.mode);
        h.set_uid(m.uid);
        h.set_gid(m.uid + 1);
        h.set_size(m.data.len() as u64);
        h.set_mtime(1_600_000_000);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(m.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn sample() -> Vec<u8> {
    let mut exe = file("pkg/bin/tool", b"#!/bin/sh\necho tool\n");
    exe.mode = 0o4755;
    exe.uid = 1234;
    tar(&[
        dir("pkg/", 0o750),
        exe,
        // A hard link's header carries its file's metadata, applied again.
        M {
            mode: 0o4755,
            uid: 1234,
            ..link("pkg/bin/tool2", b'1', "pkg/bin/tool")
        },
        link("pkg/conf", b'2', "../etc/x.conf"),
        // No header for deep/er: go-archive makes it 0755 root-owned.
        file("deep/er/leaf.txt", b"leaf\n"),
    ])
}

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn add(src_root: &Path, src: &str, dest_root: &Path, dest: &str, owner: Option<Owner>) {
    try_add(src_root, src, dest_root, dest, owner).unwrap();
}

fn try_add(
    src_root: &Path,
    src: &str,
    dest_root: &Path,
    dest: &str,
    owner: Option<Owner>,
) -> Result<(), FileOpError> {
    let a = FileActionCopy {
        src: src.into(),
        dest: dest.into(),
        mode: -1,
        timestamp: -1,
        follow_symlink: true,
        dir_copy_contents: true,
        attempt_unpack_docker_compatibility: true,
        create_dest_path: true,
        allow_wildcard: true,
        ..FileActionCopy::default()
    };
    copy_action(src_root, dest_root, &a, owner)
}

fn meta(p: &Path) -> (u32, u32, u32) {
    let m = fs::symlink_metadata(p).unwrap();
    (m.mode() & 0o7777, m.uid(), m.gid())
}

fn check_sample(d: &Path) {
    assert_eq!(meta(&d.join("pkg")), (0o750, 0, 1));
    assert_eq!(meta(&d.join("pkg/bin/tool")), (0o4755, 1234, 1235));
    let (a, b) = (d.join("pkg/bin/tool"), d.join("pkg/bin/tool2"));
    assert_eq!(
        fs::metadata(&a).unwrap().ino(),
        fs::metadata(&b).unwrap().ino()
    );
    assert_eq!(fs::read(&a).unwrap(), b"#!/bin/sh\necho tool\n");
    assert_eq!(
        fs::read_link(d.join("pkg/conf")).unwrap(),
        Path::new("../etc/x.conf")
    );
    assert_eq!(meta(&d.join("deep")), (0o755, 0, 0));
    assert_eq!(meta(&d.join("deep/er/leaf.txt")), (0o644, 0, 1));
    assert_eq!(fs::metadata(&a).unwrap().mtime(), 1_600_000_000);
    assert_eq!(fs::metadata(d.join("pkg")).unwrap().mtime(), 1_600_000_000);
}

#[test]
fn every_compression_unpacks_keeping_ids_modes_and_links() {
    let plain = sample();
    let mut zst = vec![0x50, 0x2a, 0x4d, 0x18, 3, 0, 0, 0, 1, 2, 3]; // a skippable frame
    zst.extend(ruzstd::encoding::compress_to_vec(
        plain.as_slice(),
        ruzstd::encoding::CompressionLevel::Fastest,
    ));
    let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    bz.write_all(&plain).unwrap();
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut plain.as_slice(), &mut xz).unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let blobs = [
        ("a.tar", plain.clone()),
        ("b.tgz", gz(&plain)),
        ("c.bz2", bz.finish().unwrap()),
        ("d.xz", xz),
        ("e.zst", zst),
    ];
    for (name, blob) in &blobs {
        fs::write(ctx.path().join(name), blob).unwrap();
    }
    for (name, _) in &blobs {
        let dst = tempfile::tempdir().unwrap();
        add(ctx.path(), name, dst.path(), "/out", None);
        check_sample(&dst.path().join("out"));
    }
}

#[test]
fn chown_applies_to_entries_and_created_dest_dirs() {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("a.tar"), sample()).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let o = Owner { uid: 7, gid: 8 };
    add(ctx.path(), "/a.tar", dst.path(), "/x/y/", Some(o));
    let d = dst.path().join("x/y");
    assert_eq!(meta(&dst.path().join("x")), (0o755, 7, 8));
    assert_eq!(meta(&d), (0o755, 7, 8));
    assert_eq!(meta(&d.join("pkg/bin/tool")), (0o4755, 7, 8));
    assert_eq!(meta(&d.join("pkg/conf")).1, 7);
    // Implied parents stay root's, as in go-archive.
    assert_eq!(meta(&d.join("deep")), (0o755, 0, 0));
}

#[test]
fn unpacking_merges_and_replaces() {
    let ctx = tempfile::tempdir().unwrap();
    fs::write(ctx.path().join("a.tar"), sample()).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let d = dst.path().join("out");
    fs::create_dir_all(d.join("pkg/bin/tool")).unwrap(); // a dir where a file comes
    fs::write(d.join("pkg/keep.txt"), "kept").unwrap();
    fs::write(d.join("deep"), "a file where a dir is implied").unwrap();
    let err = try_add(ctx.path(), "a.tar", dst.path(), "out", None).unwrap_err();
    assert!(err.to_string().contains("/out/deep"), "{err}");
    fs::remove_file(d.join("deep")).unwrap();
    add(ctx.path(), "a.tar", dst.path(), "out", None);
    check_sample(&d);
    assert_eq!(fs::read_to_string(d.join("pkg/keep.txt")).unwrap(), "kept");
}

#[test]
fn non_archives_are_copied() {
    let ctx = tempfile::tempdir().unwrap();
    let c = ctx.path();
    fs::write(c.join("fake.tar"), "plain text named like a tar\n").unwrap();
    fs::write(c.join("text.gz"), gz(b"gzip, but not a tar inside")).unwrap();
    fs::write(c.join("empty.tar"), "").unwrap();
    fs::write(c.join("zeros.tar"), vec![0u8; 1024]).unwrap();
    let dst = tempfile::tempdir().unwrap();
    for f in ["fake.tar", "text.gz", "empty.tar", "zeros.tar"] {
        add(c, f, dst.path(), "/o/", None);
        assert_eq!(
            fs::read(dst.path().join("o").join(f)).unwrap(),
            fs::read(c.join(f)).unwrap()
        );
    }
}

#[test]
fn truncated_archive_is_an_error_naming_it() {
    let ctx = tempfile::tempdir().unwrap();
    let t = gz(&sample());
    fs::write(ctx.path().join("cut.tgz"), &t[..t.len() / 2]).unwrap();
    let dst = tempfile::tempdir().unwrap();
    let err = try_add(ctx.path(), "cut.tgz", dst.path(), "/o", None).unwrap_err();
    assert!(err.to_string().contains("/cut.tgz"), "{err}");
}

/// Every file below `p` (relative), for "nothing changed out there".
fn listing(p: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap().path();
            out.push(e.strip_prefix(p).unwrap().to_string_lossy().into_owned());
            if fs::symlink_metadata(&e).unwrap().is_dir() {
                stack.push(e);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn hostile_archives_stay_inside_the_destination() {
    let top = tempfile::tempdir().unwrap();
    let outside = top.path().join("outside");
    let root = top.path().join("root");
    let ctx = top.path().join("ctx");
    for d in [&outside, &root, &ctx] {
        fs::create_dir(d).unwrap();
    }
    fs::write(outside.join("secret"), "s").unwrap();
    fs::set_permissions(outside.join("secret"), fs::Permissions::from_mode(0o600)).unwrap();
    let before = listing(top.path());
    let evil = tar(&[
        file("../../../escape.txt", b"1"),
        file("/abs.txt", b"2"),
        link("up", b'2', "../../../.."),
        file("up/through-up.txt", b"3"),
        link("rootlink", b'2', "/"),
        file("rootlink/through-root.txt", b"4"),
        dir("up/dir", 0o777),
    ]);
    fs::write(ctx.join("evil.tar"), &evil).unwrap();
    add(&ctx, "evil.tar", &root, "/dest", None);
    let d = root.join("dest");
    for (f, want) in [
        ("escape.txt", "1"),
        ("abs.txt", "2"),
        ("through-up.txt", "3"),
        ("through-root.txt", "4"),
    ] {
        assert_eq!(fs::read_to_string(d.join(f)).unwrap(), want, "{f}");
    }
    assert!(d.join("dir").is_dir());
    // ../../outside from /dest/outlink means /dest/outside, which is missing.
    let out = tar(&[
        link("outlink", b'2', "../../outside"),
        file("outlink/secret", b"overwritten?"),
    ]);
    fs::write(ctx.join("out.tar"), &out).unwrap();
    let err = try_add(&ctx, "out.tar", &root, "/dest", None).unwrap_err();
    assert!(err.to_string().contains("/dest/outside/secret"), "{err}");
    // A hard link can only name a file inside the destination.
    let hl = tar(&[link("hl", b'1', "../../../outside/secret")]);
    fs::write(ctx.join("hl.tar"), &hl).unwrap();
    let dst2 = tempfile::tempdir().unwrap();
    let err = try_add(&ctx, "hl.tar", dst2.path(), "/d", None).unwrap_err();
    assert!(err.is_not_found(), "{err}");
    // Nothing appeared or changed outside the destination.
    let after: Vec<String> = listing(top.path())
        .into_iter()
        .filter(|p| !p.starts_with("root/dest") && !p.starts_with("ctx/"))
        .collect();
    assert_eq!(after, before);
    let mut s = String::new();
    fs::File::open(outside.join("secret"))
        .unwrap()
        .read_to_string(&mut s)
        .unwrap();
    assert_eq!(s, "s");
    assert_eq!(fs::metadata(outside.join("secret")).unwrap().nlink(), 1);
}
