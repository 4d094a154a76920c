//! Untrusted layers must not change anything outside the destination.

use crate::require_root;
use crate::util::*;
use kiln_oci::layer::apply_layer;
use std::path::Path;

/// Applies each tar into its own fresh dir under `base/dest`; results may be errors.
fn apply_each(
    base: &Path,
    tars: Vec<(&str, Vec<u8>)>,
) -> Vec<(
    String,
    Result<kiln_oci::ApplyStats, String>,
    std::path::PathBuf,
)> {
    let mut out = Vec::new();
    for (name, tar) in tars {
        let dest = base.join("dest").join(name);
        std::fs::create_dir_all(&dest).unwrap();
        let r = apply_layer(&tar[..], &dest).map_err(|e| e.to_string());
        out.push((name.to_string(), r, dest));
    }
    out
}

#[test]
fn hostile_layers_stay_inside_dest() {
    require_root!();
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path();
    // The sentinel sits beside dest/, two levels up from each layer dir.
    let sentinel = base.join("sentinel");
    std::fs::create_dir(&sentinel).unwrap();
    std::fs::write(sentinel.join("x"), b"sentinel").unwrap();
    std::fs::write(sentinel.join("passwd"), b"root:x:0:0").unwrap();
    let abs = sentinel.to_str().unwrap().as_bytes().to_vec();
    let abs_x = [&abs[..], b"/x"].concat();
    let before = snapshot(&sentinel, true);
    let top_before: Vec<_> = std::fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();

    let tars = vec![
        (
            "dotdot",
            RawTar::new()
                .add(E::File(b"../x", b"p"))
                .add(E::File(b"../../sentinel/x", b"p"))
                .finish(),
        ),
        (
            "abs",
            RawTar::new()
                .add(E::File(&[&abs[..], b"/x"].concat(), b"p"))
                .add(E::File(b"/abs/y", b"p"))
                .finish(),
        ),
        (
            "symlink-parent",
            RawTar::new()
                .add(E::Symlink(b"a", &abs))
                .add(E::File(b"a/passwd", b"p"))
                .finish(),
        ),
        (
            "symlink-etc",
            RawTar::new()
                .add(E::Symlink(b"a", b"/etc"))
                .add(E::File(b"a/kiln-test-pwned", b"p"))
                .finish(),
        ),
        (
            "chained",
            RawTar::new()
                .add(E::Symlink(b"a", b"../../sentinel"))
                .add(E::Symlink(b"b", b"a"))
                .add(E::File(b"b/x", b"p"))
                .finish(),
        ),
        (
            "chained-then-dir",
            RawTar::new()
                .add(E::Symlink(b"a", b"../../sentinel"))
                .add(E::Symlink(b"b", b"a"))
                .add(E::Dir(b"b/", 0o777))
                .add(E::File(b"b/x", b"p"))
                .finish(),
        ),
        (
            "hardlink-out",
            RawTar::new()
                .add(E::Link(b"h", b"../../sentinel/x"))
                .finish(),
        ),
        (
            "hardlink-etc",
            RawTar::new()
                .add(E::Link(b"h", b"../../../../../../etc/passwd"))
                .finish(),
        ),
        (
            "hardlink-via-symlink",
            RawTar::new()
                .add(E::Symlink(b"s", &abs))
                .add(E::Link(b"h", b"s/x"))
                .add(E::File(b"h", b"p"))
                .finish(),
        ),
        (
            "whiteout-out",
            RawTar::new()
                .add(E::File(b"../.wh.x", b""))
                .add(E::File(b"../../sentinel/.wh.x", b""))
                .finish(),
        ),
        (
            "whiteout-dotdot",
            RawTar::new().add(E::File(b".wh..", b"")).finish(),
        ),
        (
            "write-through-symlink",
            RawTar::new()
                .add(E::Symlink(b"evil", &abs_x))
                .add(E::File(b"evil", b"p"))
                .finish(),
        ),
        (
            "link-to-symlink-then-write",
            RawTar::new()
                .add(E::Symlink(b"evil", &abs_x))
                .add(E::Link(b"hl", b"evil"))
                .add(E::File(b"hl", b"p"))
                .finish(),
        ),
        (
            "dir-over-symlink",
            RawTar::new()
                .add(E::Symlink(b"d", &abs))
                .add(E::Dir(b"d/", 0o777))
                .finish(),
        ),
        (
            "opaque-through-symlink",
            RawTar::new()
                .add(E::Symlink(b"d", &abs))
                .add(E::File(b"d/.wh..wh..opq", b""))
                .finish(),
        ),
        (
            "whiteout-through-symlink",
            RawTar::new()
                .add(E::Symlink(b"d", &abs))
                .add(E::File(b"d/.wh.x", b""))
                .finish(),
        ),
    ];
    let results = apply_each(base, tars);

    assert_eq!(
        before,
        snapshot(&sentinel, true),
        "sentinel changed; results: {results:#?}"
    );
    let top_after: Vec<_> = std::fs::read_dir(base)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut tb = top_before.clone();
    tb.push("dest".into());
    tb.sort();
    let mut ta = top_after;
    ta.sort();
    assert_eq!(tb, ta, "new entries beside dest");
    assert!(!Path::new("/etc/kiln-test-pwned").exists());

    let get = |n: &str| results.iter().find(|r| r.0 == n).unwrap();
    // Neutralised entries land inside their own dest.
    let (_, r, d) = get("dotdot");
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(std::fs::read(d.join("x")).unwrap(), b"p");
    assert_eq!(std::fs::read(d.join("sentinel/x")).unwrap(), b"p");
    let (_, r, d) = get("abs");
    assert!(r.is_ok(), "{r:?}");
    assert!(d.join("abs/y").is_file());
    assert!(
        d.join(
            abs_x
                .strip_prefix(b"/")
                .map(|s| std::str::from_utf8(s).unwrap())
                .unwrap()
        )
        .is_file()
    );
    let (_, r, d) = get("write-through-symlink");
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(std::fs::read(d.join("evil")).unwrap(), b"p");
    // Symlinked parents and escaping links are refused.
    for n in [
        "symlink-parent",
        "symlink-etc",
        "chained",
        "hardlink-out",
        "hardlink-etc",
        "opaque-through-symlink",
    ] {
        assert!(get(n).1.is_err(), "{n} should fail: {:?}", get(n).1);
    }
    assert!(get("whiteout-dotdot").1.is_err());
    let (_, r, d) = get("chained-then-dir");
    assert!(r.is_ok(), "{r:?}");
    assert_eq!(std::fs::read(d.join("b/x")).unwrap(), b"p");
    let (_, r, d) = get("dir-over-symlink");
    assert!(r.is_ok(), "{r:?}");
    assert!(d.join("d").symlink_metadata().unwrap().is_dir());
}
