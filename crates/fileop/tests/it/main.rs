//! kiln-fileop's integration tests (one binary): conformance cases replayed,
//! FileOp wiring and action corners, checksums, build-context sync.

mod checksum;
mod conformance;
mod context;
mod incremental;
mod ops;
mod unpack;
