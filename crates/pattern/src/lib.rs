//! Path patterns as Docker and BuildKit read them, in one place for the frontend, the context
//! transfer and file ops: moby/patternmatcher (`.dockerignore`, include/exclude patterns, with
//! `**` and `!` exceptions), Go's `filepath.Match` globs (COPY/rm wildcards), and the
//! `.dockerignore` file reader. Pure: no I/O.

mod glob;
mod ignorefile;
mod matcher;

pub use glob::{contains_wildcards, glob_match, split_wildcards, validate_glob};
pub use ignorefile::{clean_path, read_ignore_file};
pub use matcher::{MatchInfo, Pattern, PatternMatcher};

/// Why a pattern (list) cannot be compiled or matched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("illegal exclusion pattern: \"!\"")]
    BareExclamation,
    /// Go's `filepath.ErrBadPattern`, with the offending pattern.
    #[error("syntax error in pattern {0:?}")]
    BadPattern(String),
}
