//! Descriptors, manifests and indexes (OCI image-spec and Docker schema 2 share one shape).
//! Fields serialize in the order of the Go structs, so the JSON matches BuildKit's byte for byte.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The `org.opencontainers.image.ref.name` annotation (the tag, per the OCI layout spec).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's full image name annotation, written by BuildKit's oci/docker exporters.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
pub const ANNOTATION_CREATED: &str = "org.opencontainers.image.created";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", default, skip_serializing_if = "Vec::is_empty")]
    pub os_features: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(rename = "mediaType")]
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
}

impl Descriptor {
    /// A descriptor of `bytes` with media type `media_type`.
    pub fn of_bytes(media_type: &str, bytes: &[u8]) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: crate::digest::sha256_digest(bytes),
            size: bytes.len() as u64,
            ..Descriptor::default()
        }
    }
}

fn schema_version_2() -> u32 {
    2
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    #[serde(rename = "schemaVersion", default = "schema_version_2")]
    pub schema_version: u32,
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    /// An empty OCI manifest around `config`.
    pub fn new_oci(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest {
            schema_version: 2,
            media_type: crate::media_types::OCI_MANIFEST.into(),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    #[serde(rename = "schemaVersion", default = "schema_version_2")]
    pub schema_version: u32,
    #[serde(
        rename = "mediaType",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub media_type: String,
    #[serde(
        rename = "artifactType",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub artifact_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Index {
    pub fn new_oci(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: crate::media_types::OCI_INDEX.into(),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// The annotations BuildKit's oci/docker exporters put on the manifest descriptor in
/// `index.json` for an image `name`, which must already be normalized
/// (`docker.io/library/busybox:latest`): the full name, and the tag as the OCI ref name
/// (the full name when there is no tag, as for a by-digest name).
pub fn name_annotations(name: &str) -> BTreeMap<String, String> {
    let last = name.rsplit('/').next().unwrap_or(name);
    let ref_name = match (last.find('@'), last.find(':')) {
        (None, Some(i)) => &last[i + 1..],
        (Some(_), _) | (None, None) => name,
    };
    BTreeMap::from([
        (ANNOTATION_IMAGE_NAME.to_string(), name.to_string()),
        (ANNOTATION_REF_NAME.to_string(), ref_name.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_matches_the_specs_field_order() {
        let mut layer = Descriptor::of_bytes(crate::media_types::OCI_LAYER_GZIP, b"layer");
        layer.annotations.insert("b".into(), "2".into());
        layer.annotations.insert("a".into(), "1".into());
        let m = Manifest::new_oci(
            Descriptor::of_bytes(crate::media_types::OCI_CONFIG, b"{}"),
            vec![layer],
        );
        let json = String::from_utf8(serde_json::to_vec(&m).unwrap()).unwrap();
        let want = concat!(
            r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","#,
            r#""config":{"mediaType":"application/vnd.oci.image.config.v1+json","#,
            r#""digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","size":2},"#,
            r#""layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","#,
            r#""digest":"sha256:b7fc50be6d1c8ed8eb78d1a1c3ec8f5f6ec3f78d4e7f3b5d4d7e4c8f5a0e0f2a","size":5,"#,
            r#""annotations":{"a":"1","b":"2"}}]}"#
        );
        let layer_digest = crate::digest::sha256_digest(b"layer");
        assert_eq!(
            json,
            want.replace(
                "sha256:b7fc50be6d1c8ed8eb78d1a1c3ec8f5f6ec3f78d4e7f3b5d4d7e4c8f5a0e0f2a",
                &layer_digest
            )
        );
        let back: Manifest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn platform_and_index() {
        let mut d = Descriptor::of_bytes(crate::media_types::OCI_MANIFEST, b"m");
        d.platform = Some(Platform {
            architecture: "arm64".into(),
            os: "linux".into(),
            variant: Some("v8".into()),
            ..Platform::default()
        });
        let json = serde_json::to_string(&Index::new_oci(vec![d])).unwrap();
        assert!(json.starts_with(r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":["#), "{json}");
        assert!(
            json.contains(r#""platform":{"architecture":"arm64","os":"linux","variant":"v8"}"#),
            "{json}"
        );
        // Docker manifest lists have no artifactType etc.; unknown fields are ignored.
        let docker = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[],"extra":1}"#;
        let idx: Index = serde_json::from_str(docker).unwrap();
        assert!(crate::media_types::is_index(&idx.media_type));
    }

    #[test]
    fn name_annotations_like_containerd() {
        let a = name_annotations("docker.io/library/busybox:latest");
        assert_eq!(a[ANNOTATION_REF_NAME], "latest");
        assert_eq!(a[ANNOTATION_IMAGE_NAME], "docker.io/library/busybox:latest");
        assert_eq!(
            name_annotations("localhost:5000/x:v2")[ANNOTATION_REF_NAME],
            "v2"
        );
        let by_digest = format!("docker.io/library/x@{}", crate::digest::sha256_digest(b""));
        assert_eq!(name_annotations(&by_digest)[ANNOTATION_REF_NAME], by_digest);
        assert_eq!(
            name_annotations("localhost:5000/x")[ANNOTATION_REF_NAME],
            "localhost:5000/x"
        );
    }
}
