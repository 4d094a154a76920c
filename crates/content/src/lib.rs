//! The local store: blobs by digest (verified, atomic ingest), the metadata database, and the
//! lock that lets several processes share one root.

pub mod blobs;
pub mod lock;
pub mod meta;
