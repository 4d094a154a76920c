//! OCI and Docker image formats: media types, manifests, configs, layer tars, OCI layout.
//! Formats only: no network, no store.

pub mod compression;
pub mod descriptor;
pub mod digest;
pub mod image;
pub mod layer;
pub mod layout;
pub mod media_types;
pub mod tar;

pub use descriptor::{Descriptor, Index, Manifest, Platform, name_annotations};
pub use digest::{sha256_digest, sha256_hex};
pub use image::{HealthConfig, History, Image, ImageConfig, RootFs};
pub use layer::{
    ApplyStats, LayerBlob, LayerError, LayerStats, apply_layer, compress_layer, decompress,
    write_layer,
};
pub use layout::{BlobSource, read_layout_index, write_oci_archive};
