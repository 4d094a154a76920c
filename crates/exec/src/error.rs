use std::io;
use std::path::PathBuf;

/// Everything running a container can fail at; variants name the container, user or path.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unable to find user {user}: no matching entries in passwd file")]
    UnknownUser { user: String },
    #[error("unable to find group {group}: no matching entries in group file")]
    UnknownGroup { group: String },
    #[error("invalid user {user:?}: {reason}")]
    InvalidUser { user: String, reason: String },
    #[error("{path} exceeds {limit} bytes")]
    FileTooLarge { path: PathBuf, limit: u64 },
    #[error("working directory {cwd} is not a directory inside the rootfs")]
    InvalidCwd {
        cwd: String,
        #[source]
        source: io::Error,
    },
    #[error("start runtime {binary} for container {id}")]
    Spawn {
        id: String,
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("runtime failed for container {id}: {message}")]
    Runtime { id: String, message: String },
    #[error("container {id} was cancelled")]
    Cancelled { id: String },
}

impl ExecError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ExecError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
