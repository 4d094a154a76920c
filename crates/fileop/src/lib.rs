//! LLB file operations (mkdir, mkfile, rm, symlink, copy) and content checksums on directories

mod actions;
mod checksum;
mod chown;
mod context;
mod copy;
mod error;
mod fsops;
mod manifest;
mod mode;
mod op;
mod pattern;
mod resolve;
mod transfer;
mod unpack;

pub use checksum::{CHECKSUM_VERSION, ChecksumOpts, checksum};
pub use chown::{Owner, resolve_owner};
pub use context::{ContextFilter, ExcludeFn, SkipDirFn, SyncStats, sync_context};
pub use copy::{CopyOptions, clone_tree, copy, copy_action};
pub use error::{FileOpError, Result};
pub use manifest::manifest_valid;
pub use mode::ModeSet;
pub use op::{FileOpBackend, run_file_op};
pub use pattern::{MatchInfo, PatternMatcher};
pub use resolve::{clean, resolve};
pub use transfer::{Previous, context_unchanged, sync_context_incremental};
