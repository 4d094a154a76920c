//! OCI archives we write are accepted by skopeo and umoci, and read back by our layout reader.

use crate::util::*;
use kiln_oci::descriptor::{Descriptor, Index, Manifest, Platform, name_annotations};
use kiln_oci::layout::{self, BlobSource};
use kiln_oci::{Image, media_types};
use std::path::Path;
use std::process::Command;

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A one-layer image of a small tree, as (index, blobs, layer blob path).
fn build_image(dir: &Path) -> (Index, Vec<(String, Vec<u8>)>, std::path::PathBuf, String) {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    file(&root, b"hello.txt", b"hello from kiln\n", 0o644);
    file(&root, b"etc/motd", b"motd\n", 0o600);
    std::os::unix::fs::symlink("hello.txt", root.join("greeting")).unwrap();

    let layer_path = dir.join("layer.tar.gz");
    let blob =
        kiln_oci::compress_layer(&root, std::fs::File::create(&layer_path).unwrap()).unwrap();

    let mut image = Image {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..Image::default()
    };
    image.rootfs.diff_ids.push(blob.diff_id.clone());
    image.config.cmd = Some(vec!["/bin/sh".into()]);
    image.config.env = vec!["PATH=/usr/bin:/bin".into()];
    let config = serde_json::to_vec(&image).unwrap();
    let config_desc = Descriptor::of_bytes(media_types::OCI_CONFIG, &config);
    let layer_desc = Descriptor {
        media_type: blob.media_type.clone(),
        digest: blob.digest.clone(),
        size: blob.size,
        ..Descriptor::default()
    };
    let manifest = Manifest::new_oci(config_desc.clone(), vec![layer_desc]);
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let mut mdesc = Descriptor::of_bytes(media_types::OCI_MANIFEST, &manifest_bytes);
    mdesc.annotations = name_annotations("docker.io/library/kiln-test:v1");
    mdesc.platform = Some(Platform {
        architecture: "amd64".into(),
        os: "linux".into(),
        ..Platform::default()
    });
    let index = Index::new_oci(vec![mdesc.clone()]);
    let blobs = vec![(config_desc.digest, config), (mdesc.digest, manifest_bytes)];
    (index, blobs, layer_path, blob.digest)
}

fn write_archive(dir: &Path) -> (std::path::PathBuf, Index, String) {
    let (index, blobs, layer_path, layer_digest) = build_image(dir);
    let mut sources: Vec<(String, BlobSource<'_>)> = blobs
        .iter()
        .map(|(d, b)| (d.clone(), BlobSource::Bytes(b)))
        .collect();
    sources.push((layer_digest.clone(), BlobSource::File(&layer_path)));
    sources.push((layer_digest.clone(), BlobSource::File(&layer_path))); // duplicates are fine
    let out = dir.join("image.tar");
    layout::write_oci_archive(std::fs::File::create(&out).unwrap(), &index, &sources).unwrap();
    (out, index, layer_digest)
}

#[test]
fn archive_layout_matches_containerd() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, index, _) = write_archive(tmp.path());
    let bytes = std::fs::read(&out).unwrap();
    let names: Vec<String> = tar_names(&bytes)
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect();
    assert_eq!(names.len(), 7, "{names:?}");
    assert_eq!(&names[..2], ["blobs/", "blobs/sha256/"]);
    assert_eq!(&names[5..], ["index.json", "oci-layout"]);
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    let ann = &index.manifests[0].annotations;
    assert_eq!(ann["org.opencontainers.image.ref.name"], "v1");
    assert_eq!(
        ann["io.containerd.image.name"],
        "docker.io/library/kiln-test:v1"
    );
}

#[test]
fn bad_blob_digest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let index = Index::new_oci(vec![]);
    let wrong = kiln_oci::sha256_digest(b"other");
    let err = layout::write_oci_archive(Vec::new(), &index, &[(wrong, BlobSource::Bytes(b"data"))])
        .unwrap_err();
    assert!(matches!(err, layout::Error::Mismatch { .. }), "{err}");
    let err = layout::write_oci_archive(
        Vec::new(),
        &index,
        &[("sha256:../../etc".into(), BlobSource::Bytes(b""))],
    )
    .unwrap_err();
    assert!(matches!(err, layout::Error::InvalidDigest { .. }), "{err}");
    assert!(layout::blob_path(tmp.path(), "sha256:AB").is_err());
}

#[test]
fn skopeo_and_umoci_accept_our_archive() {
    if !have("skopeo") || !have("umoci") || !is_root() {
        eprintln!("skipped: needs root, skopeo and umoci");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (out, index, layer_digest) = write_archive(tmp.path());

    let inspect = run(Command::new("skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", out.display())));
    let v: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Os"], "linux");
    assert_eq!(v["Layers"][0], layer_digest.as_str());
    assert_eq!(v["Env"][0], "PATH=/usr/bin:/bin");

    // umoci works on a layout directory: unpack the archive with our own reader first.
    let layout_dir = tmp.path().join("layout");
    std::fs::create_dir(&layout_dir).unwrap();
    run(Command::new("tar")
        .arg("-xf")
        .arg(&out)
        .arg("-C")
        .arg(&layout_dir));
    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:v1", layout_dir.display()))
        .arg(&bundle));
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read(rootfs.join("hello.txt")).unwrap(),
        b"hello from kiln\n"
    );
    assert_eq!(std::fs::read(rootfs.join("etc/motd")).unwrap(), b"motd\n");
    assert_eq!(
        std::fs::read_link(rootfs.join("greeting"))
            .unwrap()
            .to_str(),
        Some("hello.txt")
    );

    // And our layout reader walks index -> manifest -> config.
    let read = layout::read_layout_index(&layout_dir).unwrap();
    assert_eq!(read, index);
    let manifest = layout::read_manifest(&layout_dir, &read.manifests[0]).unwrap();
    assert_eq!(manifest.layers[0].digest, layer_digest);
    let config = layout::read_image_config(&layout_dir, &manifest.config).unwrap();
    assert_eq!(config.config.cmd, Some(vec!["/bin/sh".to_string()]));
    let layer = layout::blob_path(&layout_dir, &layer_digest).unwrap();
    let applied = tempfile::tempdir().unwrap();
    let tar = kiln_oci::decompress(std::fs::File::open(layer).unwrap()).unwrap();
    kiln_oci::apply_layer(tar, applied.path()).unwrap();
    assert_eq!(
        std::fs::read(applied.path().join("hello.txt")).unwrap(),
        b"hello from kiln\n"
    );
}

#[test]
fn layout_reader_checks_digests() {
    let tmp = tempfile::tempdir().unwrap();
    let (out, _, _) = write_archive(tmp.path());
    let dir = tmp.path().join("layout");
    std::fs::create_dir(&dir).unwrap();
    run(Command::new("tar").arg("-xf").arg(&out).arg("-C").arg(&dir));
    let index = layout::read_layout_index(&dir).unwrap();
    let path = layout::blob_path(&dir, &index.manifests[0].digest).unwrap();
    let mut perms = std::fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    std::fs::set_permissions(&path, perms).unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] = b' ';
    std::fs::write(&path, bytes).unwrap();
    let err = layout::read_manifest(&dir, &index.manifests[0]).unwrap_err();
    assert!(matches!(err, layout::Error::Mismatch { .. }), "{err}");
    assert!(matches!(
        layout::read_layout_index(tmp.path()),
        Err(layout::Error::Read { .. })
    ));
}
