//! The image config blob (`application/vnd.oci.image.config.v1+json`) with Docker's extensions,
//! field for field as BuildKit writes it (Go's struct order, empty fields omitted).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

fn is_false(b: &bool) -> bool {
    !*b
}

/// An empty JSON object, as used for the values of `ExposedPorts` and `Volumes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Image {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub author: Option<String>,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(
        rename = "os.version",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub os_version: Option<String>,
    #[serde(rename = "os.features", skip_serializing_if = "Vec::is_empty", default)]
    pub os_features: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: ImageConfig,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub history: Vec<History>,
}

/// The runtime defaults of an image (`config` in the blob).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(rename = "User", skip_serializing_if = "String::is_empty", default)]
    pub user: String,
    #[serde(
        rename = "ExposedPorts",
        skip_serializing_if = "BTreeMap::is_empty",
        default
    )]
    pub exposed_ports: BTreeMap<String, Empty>,
    #[serde(rename = "Env", skip_serializing_if = "Vec::is_empty", default)]
    pub env: Vec<String>,
    /// `None` is unset (inherits); `Some(vec![])` is only produced by Docker's null handling.
    #[serde(
        rename = "Entrypoint",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub entrypoint: Option<Vec<String>>,
    #[serde(rename = "Cmd", skip_serializing_if = "Option::is_none", default)]
    pub cmd: Option<Vec<String>>,
    #[serde(
        rename = "Volumes",
        skip_serializing_if = "BTreeMap::is_empty",
        default
    )]
    pub volumes: BTreeMap<String, Empty>,
    #[serde(
        rename = "WorkingDir",
        skip_serializing_if = "String::is_empty",
        default
    )]
    pub working_dir: String,
    #[serde(rename = "Labels", skip_serializing_if = "BTreeMap::is_empty", default)]
    pub labels: BTreeMap<String, String>,
    #[serde(
        rename = "StopSignal",
        skip_serializing_if = "String::is_empty",
        default
    )]
    pub stop_signal: String,
    #[serde(rename = "ArgsEscaped", skip_serializing_if = "is_false", default)]
    pub args_escaped: bool,
    #[serde(
        rename = "Healthcheck",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub healthcheck: Option<HealthConfig>,
    #[serde(rename = "OnBuild", skip_serializing_if = "Vec::is_empty", default)]
    pub on_build: Vec<String>,
    #[serde(rename = "Shell", skip_serializing_if = "Vec::is_empty", default)]
    pub shell: Vec<String>,
}

/// Docker's HEALTHCHECK settings; durations are nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthConfig {
    #[serde(rename = "Test", skip_serializing_if = "Vec::is_empty", default)]
    pub test: Vec<String>,
    #[serde(rename = "Interval", skip_serializing_if = "is_zero", default)]
    pub interval: i64,
    #[serde(rename = "Timeout", skip_serializing_if = "is_zero", default)]
    pub timeout: i64,
    #[serde(rename = "StartPeriod", skip_serializing_if = "is_zero", default)]
    pub start_period: i64,
    #[serde(rename = "StartInterval", skip_serializing_if = "is_zero", default)]
    pub start_interval: i64,
    #[serde(rename = "Retries", skip_serializing_if = "is_zero", default)]
    pub retries: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl Default for RootFs {
    fn default() -> Self {
        RootFs {
            kind: "layers".into(),
            diff_ids: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub created_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub comment: Option<String>,
    #[serde(skip_serializing_if = "is_false", default)]
    pub empty_layer: bool,
}
