//! OCI and Docker image formats: media types, manifests, configs, layer tars, OCI layout.
//! Formats only: no network, no store.

pub mod image;

pub use image::{HealthConfig, History, Image, ImageConfig, RootFs};
