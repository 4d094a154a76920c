//! `.dockerignore` reading and matching with Docker's semantics (moby/patternmatcher and its
//! `ignorefile` reader). The implementation lives in kiln-pattern, shared with the context
//! transfer and file ops; this module keeps the frontend's names.

pub use kiln_pattern::{
    MatchInfo, Pattern, PatternError, PatternMatcher, clean_path, read_ignore_file,
};
