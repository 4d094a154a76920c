//! The local store: blobs by digest (verified, atomic ingest) and the metadata database.

pub mod blobs;
pub mod meta;
