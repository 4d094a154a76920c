//! Overlayfs snapshots: layer directories, mounts, and layer diffs
//!
//! A layer is a directory in overlayfs upper-dir format: whiteouts are 0:0 character devices and
//! opaque directories carry `trusted.overlay.opaque=y`. Mounting with
//! `index=off,metacopy=off,redirect_dir=off` keeps every upper dir a complete layer diff.

mod error;
mod mount;
mod store;
mod sweep;

pub use error::{Result, SnapshotError};
pub use mount::{Mount, mount};
pub use store::{Layer, Snapshotter};
pub use sweep::{SweepReport, sweep};
