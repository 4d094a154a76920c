//! How apply_layer folds OCI whiteouts and odd entry orders into an upper dir.

use crate::require_root;
use crate::util::*;
use kiln_oci::layer::apply_layer;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

fn apply(tar: Vec<u8>) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    apply_layer(&tar[..], d.path()).unwrap();
    d
}

fn opaque(path: &std::path::Path) -> bool {
    xattr::get(path, "trusted.overlay.opaque")
        .unwrap()
        .as_deref()
        == Some(b"y")
}

#[test]
fn whiteouts_become_devices_and_opaque_markers_xattrs() {
    require_root!();
    let d = apply(
        RawTar::new()
            .add(E::File(b"a/b/.wh.gone", b""))
            .add(E::File(b"c/.wh..wh..opq", b""))
            .add(E::File(b".wh..wh.plnk", b""))
            .finish(),
    );
    let md = d.path().join("a/b/gone").symlink_metadata().unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(
        (md.rdev(), md.uid(), md.gid(), md.mode() & 0o7777),
        (0, 0, 0, 0)
    );
    // Missing parents are 0755 and not opaque.
    let a = d.path().join("a").symlink_metadata().unwrap();
    assert_eq!(a.mode() & 0o7777, 0o755);
    assert!(!opaque(&d.path().join("a")));
    assert!(opaque(&d.path().join("c")));
    assert!(!d.path().join(".wh..wh.plnk").exists());
    assert!(!d.path().join("plnk").exists());
}

#[test]
fn whiteout_and_entry_in_one_layer() {
    require_root!();
    let d = apply(
        RawTar::new()
            .add(E::File(b".wh.d1", b""))
            .add(E::Dir(b"d1/", 0o755))
            .add(E::Dir(b"d2/", 0o755))
            .add(E::File(b".wh.d2", b""))
            .add(E::File(b"f", b"kept"))
            .add(E::File(b".wh.f", b""))
            .add(E::File(b".wh.g", b""))
            .add(E::File(b"g", b"back"))
            .finish(),
    );
    // A directory that replaces a whiteout, or is whited out too, hides the lower one.
    assert!(opaque(&d.path().join("d1")));
    assert!(opaque(&d.path().join("d2")));
    assert_eq!(std::fs::read(d.path().join("f")).unwrap(), b"kept");
    assert_eq!(std::fs::read(d.path().join("g")).unwrap(), b"back");
}

#[test]
fn directory_after_children_and_replacements() {
    require_root!();
    let d = apply(
        RawTar::new()
            .add(E::File(b"x/y/z", b"z"))
            .add(E::Dir(b"x/", 0o700))
            .add(E::File(b"r", b"first"))
            .add(E::Symlink(b"r", b"target"))
            .add(E::Dir(b"t/", 0o755))
            .add(E::File(b"t/inner", b""))
            .add(E::File(b"t", b"file now"))
            .add(E::File(b"./dot/./slash//name", b"clean"))
            .finish(),
    );
    let x = d.path().join("x").symlink_metadata().unwrap();
    assert_eq!(x.mode() & 0o7777, 0o700);
    assert_eq!(
        x.mtime(),
        1_000_000,
        "directory mtimes are set after their children"
    );
    assert_eq!(
        std::fs::read_link(d.path().join("r")).unwrap().to_str(),
        Some("target")
    );
    assert_eq!(std::fs::read(d.path().join("t")).unwrap(), b"file now");
    assert_eq!(
        std::fs::read(d.path().join("dot/slash/name")).unwrap(),
        b"clean"
    );
}

#[test]
fn dest_must_be_empty() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("x"), b"").unwrap();
    let err = apply_layer(&RawTar::new().finish()[..], d.path()).unwrap_err();
    assert!(
        matches!(err, kiln_oci::LayerError::DestNotEmpty { .. }),
        "{err}"
    );
}

#[test]
fn truncated_and_garbage_tars_are_errors() {
    let d = tempfile::tempdir().unwrap();
    let mut t = RawTar::new().add(E::File(b"f", &[7u8; 2000])).finish();
    t.truncate(1000);
    assert!(apply_layer(&t[..], d.path()).is_err());
    let d = tempfile::tempdir().unwrap();
    let mut bad = RawTar::new().add(E::File(b"f", b"x")).finish();
    bad[0] ^= 1; // checksum mismatch
    assert!(matches!(
        apply_layer(&bad[..], d.path()),
        Err(kiln_oci::LayerError::Malformed { .. })
    ));
    let d = tempfile::tempdir().unwrap();
    assert!(apply_layer(&[0x55u8; 700][..], d.path()).is_err());
}
