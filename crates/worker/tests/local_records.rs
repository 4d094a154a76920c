//! The store's memory of local source transfers and content checksums: records point only at
//! recorded layers, replaced layers go once nothing names them (after a build, or when the
//! store opens after a crash), and remembered checksums live and die with their layers.

use kiln_content::meta::Table;
use kiln_worker::store::{LocalRecord, Ref, Store};
use std::path::Path;

fn open(root: &Path) -> Store {
    Store::open(root, || {}).unwrap()
}

/// A finished transfer layer with a manifest file, as LocalSource makes them.
fn transfer_layer(s: &Store) -> String {
    let l = s.new_layer().unwrap();
    std::fs::write(l.dir.join("file"), "content").unwrap();
    std::fs::write(s.manifest_path(&l.id), "manifest").unwrap();
    s.finish_layer(&l);
    l.id
}

fn record(origin: &str, layer: &str, created: u128) -> LocalRecord {
    LocalRecord {
        origin: origin.into(),
        layer: layer.into(),
        manifest: "digest".into(),
        created,
        retired: Vec::new(),
    }
}

fn exists(s: &Store, layer: &str) -> bool {
    s.layer_dir(layer).is_dir()
}

fn recorded(s: &Store, layer: &str) -> bool {
    s.meta.get(Table::Layers, layer).unwrap().is_some()
}

#[test]
fn a_replaced_transfer_is_removed_after_the_build() {
    let root = tempfile::tempdir().unwrap();
    let s = open(root.path());
    let l1 = transfer_layer(&s);
    s.record_local("id", &record("o", &l1, 1)).unwrap();
    s.discard_pending();
    assert!(
        exists(&s, &l1) && recorded(&s, &l1),
        "a recorded transfer stays"
    );
    let l2 = transfer_layer(&s);
    s.record_local("id", &record("o", &l2, 2)).unwrap();
    assert!(exists(&s, &l1), "kept while the build runs");
    s.discard_pending();
    assert!(!exists(&s, &l1) && !recorded(&s, &l1));
    assert!(!s.manifest_path(&l1).exists());
    assert!(exists(&s, &l2) && recorded(&s, &l2));
    let (prev, own) = s.local_previous("id", "o").unwrap().unwrap();
    assert_eq!((prev.layer.as_str(), own), (l2.as_str(), true));
    // Another identity of the same origin starts from it.
    let (prev, own) = s.local_previous("other", "o").unwrap().unwrap();
    assert_eq!((prev.layer.as_str(), own), (l2.as_str(), false));
    assert!(s.local_previous("other", "elsewhere").unwrap().is_none());
}

#[test]
fn a_replaced_transfer_that_a_cache_record_names_stays() {
    let root = tempfile::tempdir().unwrap();
    let s = open(root.path());
    let l1 = transfer_layer(&s);
    s.record_local("id", &record("o", &l1, 1)).unwrap();
    // A merge of the context with something else, cached.
    s.record("merge", &[Ref::scratch().with_layer(&l1).with_layer("x")])
        .unwrap();
    let l2 = transfer_layer(&s);
    s.record_local("id", &record("o", &l2, 2)).unwrap();
    s.discard_pending();
    assert!(exists(&s, &l1) && recorded(&s, &l1));
    assert!(s.lookup("merge").unwrap().is_none(), "x never existed");
}

#[test]
fn opening_after_a_crash_finishes_what_was_committed() {
    let root = tempfile::tempdir().unwrap();
    let (l1, l2, half) = {
        let s = open(root.path());
        let l1 = transfer_layer(&s);
        s.record_local("id", &record("o", &l1, 1)).unwrap();
        let l2 = transfer_layer(&s);
        s.record_local("id", &record("o", &l2, 2)).unwrap();
        // A transfer cut short: a layer and a manifest, never recorded.
        let half = transfer_layer(&s);
        // The process dies: no discard_pending.
        (l1, l2, half)
    };
    let s = open(root.path());
    assert!(!exists(&s, &l1) && !recorded(&s, &l1), "retired on opening");
    assert!(!root.path().join("snapshots").join(&half).exists());
    assert!(exists(&s, &l2));
    assert_eq!(
        s.local_previous("id", "o").unwrap().unwrap().0.layer,
        l2,
        "the committed record holds"
    );
}

#[test]
fn a_record_whose_layer_is_gone_is_dropped_on_opening() {
    let root = tempfile::tempdir().unwrap();
    {
        let s = open(root.path());
        let l1 = transfer_layer(&s);
        s.record_local("id", &record("o", &l1, 1)).unwrap();
        std::fs::remove_dir_all(s.layer_dir(&l1).parent().unwrap()).unwrap();
        assert!(s.local_previous("id", "o").unwrap().is_none());
    }
    let s = open(root.path());
    assert!(s.meta.entries(Table::Locals).unwrap().is_empty());
}

#[test]
fn an_origin_keeps_its_newest_few_transfers() {
    let root = tempfile::tempdir().unwrap();
    let s = open(root.path());
    let mut layers = Vec::new();
    for i in 0..6u128 {
        let l = transfer_layer(&s);
        s.record_local(&format!("filters-{i}"), &record("o", &l, i))
            .unwrap();
        layers.push(l);
    }
    let other = transfer_layer(&s);
    s.record_local("elsewhere", &record("p", &other, 0))
        .unwrap();
    s.discard_pending();
    let kept: Vec<bool> = layers.iter().map(|l| exists(&s, l)).collect();
    assert_eq!(kept, [false, false, true, true, true, true]);
    assert!(exists(&s, &other), "other origins are not counted");
    assert_eq!(s.meta.entries(Table::Locals).unwrap().len(), 5);
}

#[test]
fn checksums_are_remembered_with_their_layers() {
    let root = tempfile::tempdir().unwrap();
    let (l1, loose) = {
        let s = open(root.path());
        let l1 = transfer_layer(&s);
        s.record_local("id", &record("o", &l1, 1)).unwrap();
        let loose = s.new_layer().unwrap().id;
        let layers = vec![l1.clone()];
        s.remember_checksum(&layers, "/", "opts", "sha256:one");
        s.remember_checksum(std::slice::from_ref(&loose), "/", "opts", "sha256:loose");
        // Visible at once within the build.
        assert_eq!(
            s.checksum_memo(&layers, "/", "opts").as_deref(),
            Some("sha256:one")
        );
        s.discard_pending();
        (l1, loose)
    };
    let s = open(root.path());
    let layers = vec![l1.clone()];
    assert_eq!(
        s.checksum_memo(&layers, "/", "opts").as_deref(),
        Some("sha256:one")
    );
    assert_eq!(s.checksum_memo(&layers, "/", "other opts"), None);
    assert_eq!(s.checksum_memo(&layers, "/other", "opts"), None);
    assert_eq!(
        s.checksum_memo(&[loose], "/", "opts"),
        None,
        "never written for a layer that was not kept"
    );
    // Retiring the layer takes its checksums along.
    let l2 = transfer_layer(&s);
    s.record_local("id", &record("o", &l2, 2)).unwrap();
    s.discard_pending();
    assert!(s.meta.entries(Table::Checksums).unwrap().is_empty());
}
