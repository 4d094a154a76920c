use std::io;
use std::path::PathBuf;

/// Everything the snapshot crate can fail at; each variant names the path involved.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mount {target}")]
    Mount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unmount {target}")]
    Unmount {
        target: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("mount {target}: {reason}")]
    InvalidMount { target: PathBuf, reason: String },
    #[error("invalid snapshot id {0:?}")]
    InvalidId(String),
}

impl SnapshotError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        SnapshotError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = SnapshotError> = std::result::Result<T, E>;
