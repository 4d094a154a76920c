//! Layer tars <-> overlayfs upper directories.
//!
//! A snapshot in Kiln is an overlayfs upper dir: a deleted path is a 0:0 character device
//! (whiteout) and a directory that hides everything below it carries
//! `trusted.overlay.opaque=y`. A layer tar uses the OCI spelling instead: `.wh.NAME` files and
//! `.wh..wh..opq` markers. [`apply_layer`] turns a tar into an upper dir, [`write_layer`] and
//! [`compress_layer`] do the reverse.

mod apply;
mod compress;
mod fsutil;
mod pargz;
pub(crate) mod tar_write;
mod write;

pub use crate::compression::{Decompressed, decompress};
pub use apply::{ApplyStats, apply_layer};
pub use compress::{LayerBlob, compress_layer};
pub use write::{LayerStats, write_layer};

use std::io;
use std::path::PathBuf;

/// The overlayfs xattr marking an opaque directory.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The same marker when overlayfs runs with `userxattr` (rootless).
pub const OPAQUE_XATTR_USER: &str = "user.overlay.opaque";
pub const WHITEOUT_PREFIX: &str = ".wh.";
pub const WHITEOUT_OPAQUE: &str = ".wh..wh..opq";

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("reading layer tar")]
    Read(#[source] io::Error),
    #[error("malformed tar entry {entry:?}: {reason}")]
    Malformed { entry: String, reason: &'static str },
    #[error("applying tar entry {entry:?}")]
    Apply {
        entry: String,
        #[source]
        source: io::Error,
    },
    #[error("tar entry {entry:?} has a parent that is not a directory (a symlink or a file)")]
    ParentNotDir { entry: String },
    #[error("hard link {entry:?} points to {target:?}, which is not an earlier file of this layer")]
    BadLink { entry: String, target: String },
    #[error("{path} is not an empty directory")]
    DestNotEmpty { path: PathBuf },
    #[error("opening {path}")]
    Dest {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("reading {path}")]
    Walk {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing tar entry for {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{format} compressed layers are not supported")]
    Compression { format: &'static str },
}

/// Lossy text of a byte name, for error messages only.
pub(crate) fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
