//! The build engine as a library: the Control API behind a Rust trait, with its tonic adapter
