//! The OCI runtime driver: runc, with BuildKit's container defaults
