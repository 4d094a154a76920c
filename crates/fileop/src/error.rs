//! The crate's error type. Paths in messages are relative to the root they
//! live in (shown as absolute, `/a/b`), as BuildKit shows them.

use std::io;

/// Everything that can go wrong while running file actions, checksumming or
/// syncing a build context.
#[derive(Debug, thiserror::Error)]
pub enum FileOpError {
    /// A path that must exist does not (a COPY source, an rm target).
    #[error("{path:?}: not found")]
    NotFound { path: String },
    /// A system call failed on a path.
    #[error("failed to {op} {path}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// The FileOp itself is malformed (bad indexes, loops, missing outputs).
    #[error("invalid file op: {0}")]
    InvalidOp(String),
    /// An include/exclude or wildcard pattern does not parse.
    #[error("invalid pattern {pattern:?}: {reason}")]
    Pattern { pattern: String, reason: String },
    /// A `--chmod` value does not parse.
    #[error("invalid chmod value {0:?}")]
    Mode(String),
    /// A directory would have to be created where something else is.
    #[error("cannot copy to non-directory: {path}")]
    NotADirectory { path: String },
    /// A file would have to replace a directory.
    #[error("cannot replace to directory {path} with file")]
    ReplaceDirWithFile { path: String },
    /// Symlinks inside a root loop or nest too deeply.
    #[error("{path}: too many levels of symbolic links")]
    TooManyLinks { path: String },
    /// The user or group database of a root is unusable.
    #[error("{path}: {reason}")]
    UserDb { path: String, reason: String },
    /// A copy would need something not implemented yet.
    #[error("{path}: {what} is not supported yet")]
    Unsupported { path: String, what: &'static str },
    /// An archive that ADD unpacks holds an entry it cannot extract.
    #[error("{path}: {reason}")]
    Archive { path: String, reason: String },
    /// The action at `index` failed.
    #[error("file action {index} ({kind}) failed")]
    Action {
        index: usize,
        kind: &'static str,
        #[source]
        source: Box<FileOpError>,
    },
    /// The caller's backend failed to provide a root.
    #[error("file op backend failed for input {index}")]
    Backend {
        index: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl FileOpError {
    pub(crate) fn io(op: &'static str, path: impl Into<String>, source: io::Error) -> Self {
        FileOpError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True when the failure means "this path does not exist".
    pub fn is_not_found(&self) -> bool {
        match self {
            FileOpError::NotFound { .. } => true,
            FileOpError::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            FileOpError::Action { source, .. } => source.is_not_found(),
            _ => false,
        }
    }
}

/// Result alias for this crate.
pub type Result<T, E = FileOpError> = std::result::Result<T, E>;
