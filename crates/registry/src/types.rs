//! What the client needs beyond kiln-oci's formats: the platform it is asked for, platform
//! matching against index entries, and a probe telling manifests from indexes.

pub use kiln_oci::Descriptor;
pub(crate) use kiln_oci::{Index, Manifest};
use serde::{Deserialize, Serialize};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
pub const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What the client asks for when resolving, most specific first.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The platform asked for (`os`, `architecture`, `variant`); index entries carry the fuller
/// `kiln_oci::Platform`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Self {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        }
    }

    /// The platform this process runs on (linux/amd64, linux/arm64, ...).
    pub fn host() -> Self {
        let (arch, variant) = normalize_arch(std::env::consts::ARCH, "");
        Self::new(
            std::env::consts::OS,
            &arch,
            (!variant.is_empty()).then_some(variant.as_str()),
        )
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&platform_string(
            &self.os,
            &self.architecture,
            self.variant.as_deref(),
        ))
    }
}

/// `os/arch[/variant]`.
pub(crate) fn platform_string(os: &str, arch: &str, variant: Option<&str>) -> String {
    match variant {
        Some(v) if !v.is_empty() => format!("{os}/{arch}/{v}"),
        _ => format!("{os}/{arch}"),
    }
}

/// Architecture and variant in containerd's canonical spelling, so `x86_64` equals `amd64`,
/// `aarch64` equals `arm64`, arm64's `v8` is its default and bare `arm` means `arm/v7`.
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let arch = arch.to_ascii_lowercase();
    let variant = variant.to_ascii_lowercase();
    match arch.as_str() {
        "i386" | "i686" | "x86" => ("386".into(), String::new()),
        "x86_64" | "x86-64" | "amd64" => (
            "amd64".into(),
            if variant == "v1" {
                String::new()
            } else {
                variant
            },
        ),
        "aarch64" | "arm64" => (
            "arm64".into(),
            if variant == "8" || variant == "v8" {
                String::new()
            } else {
                variant
            },
        ),
        "armhf" => ("arm".into(), "v7".into()),
        "armel" => ("arm".into(), "v6".into()),
        "arm" => {
            let v = match variant.as_str() {
                "" | "7" => "v7".to_string(),
                "5" | "6" | "8" => format!("v{variant}"),
                _ => variant,
            };
            ("arm".into(), v)
        }
        _ => (arch, variant),
    }
}

/// The version number of a `vN` variant.
fn variant_level(v: &str) -> Option<u32> {
    v.strip_prefix('v').and_then(|n| n.parse().ok())
}

/// How well an index entry fits `want`: `Some(0)` exactly, higher for older compatible variants
/// (an amd64/v3 host runs v2, v1 and variant-less images; arm/v7 runs v6 and v5), `None` not at all.
pub(crate) fn platform_rank(want: &Platform, have: &kiln_oci::Platform) -> Option<u32> {
    if have.os == "unknown" || have.architecture == "unknown" || have.os != want.os {
        return None;
    }
    let (wa, wv) = normalize_arch(&want.architecture, want.variant.as_deref().unwrap_or(""));
    let (ha, hv) = normalize_arch(&have.architecture, have.variant.as_deref().unwrap_or(""));
    if wa != ha {
        return None;
    }
    if wv == hv {
        return Some(0);
    }
    let base = if wa == "amd64" { 1 } else { 0 };
    let w = if wv.is_empty() {
        Some(base)
    } else {
        variant_level(&wv)
    };
    let h = if hv.is_empty() {
        Some(base)
    } else {
        variant_level(&hv)
    };
    match (w, h) {
        (Some(w), Some(h)) if (wa == "amd64" || wa == "arm") && h < w => Some(w - h),
        _ => None,
    }
}

/// Just the fields needed to tell what a manifest document is.
#[derive(Debug, Deserialize)]
pub(crate) struct Probe {
    #[serde(rename = "schemaVersion", default)]
    pub schema_version: Option<u32>,
    #[serde(rename = "mediaType", default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Option<serde_json::Value>,
    #[serde(default)]
    pub config: Option<serde_json::Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        let mut it = s.split('/');
        let (os, arch) = (it.next().unwrap(), it.next().unwrap());
        Platform::new(os, arch, it.next())
    }

    fn e(s: &str) -> kiln_oci::Platform {
        let want = p(s);
        kiln_oci::Platform {
            os: want.os,
            architecture: want.architecture,
            variant: want.variant,
            ..Default::default()
        }
    }

    #[test]
    fn platform_matching() {
        assert_eq!(platform_rank(&p("linux/amd64"), &e("linux/amd64")), Some(0));
        assert_eq!(
            platform_rank(&p("linux/amd64"), &e("linux/x86_64")),
            Some(0)
        );
        assert_eq!(
            platform_rank(&p("linux/amd64"), &e("linux/amd64/v1")),
            Some(0)
        );
        assert_eq!(
            platform_rank(&p("linux/amd64/v3"), &e("linux/amd64")),
            Some(2)
        );
        assert_eq!(platform_rank(&p("linux/amd64"), &e("linux/amd64/v3")), None);
        assert_eq!(
            platform_rank(&p("linux/arm64"), &e("linux/arm64/v8")),
            Some(0)
        );
        assert_eq!(platform_rank(&p("linux/arm"), &e("linux/arm/v7")), Some(0));
        assert_eq!(
            platform_rank(&p("linux/arm/v7"), &e("linux/arm/v6")),
            Some(1)
        );
        assert_eq!(platform_rank(&p("linux/arm/v6"), &e("linux/arm/v7")), None);
        assert_eq!(platform_rank(&p("linux/amd64"), &e("linux/arm64")), None);
        assert_eq!(platform_rank(&p("linux/amd64"), &e("windows/amd64")), None);
        assert_eq!(
            platform_rank(&p("linux/amd64"), &e("unknown/unknown")),
            None
        );
    }
}
