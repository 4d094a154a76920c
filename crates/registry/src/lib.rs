//! OCI distribution client: resolve and pull images from registries
