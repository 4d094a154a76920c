//! Wildcard expansion on a directory tree (COPY/rm sources). The pattern syntax itself,
//! Go's `filepath.Match` and moby/patternmatcher, lives in kiln-pattern, shared with the
//! Dockerfile frontend and the context transfer.

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use kiln_pattern::validate_glob;
pub use kiln_pattern::{
    MatchInfo, PatternError, PatternMatcher, contains_wildcards, glob_match, split_wildcards,
};

use crate::error::{FileOpError, Result};
use crate::resolve::{display, root_path};

impl From<PatternError> for FileOpError {
    fn from(e: PatternError) -> Self {
        let (pattern, reason) = match e {
            PatternError::BareExclamation => ("!".to_string(), e.to_string()),
            PatternError::BadPattern(p) => (p, "syntax error in pattern".to_string()),
        };
        FileOpError::Pattern { pattern, reason }
    }
}

/// The matcher for an include/exclude list; `None` for an empty one (no filter).
pub(crate) fn optional_matcher(p: &[String]) -> Result<Option<PatternMatcher>> {
    if p.is_empty() {
        Ok(None)
    } else {
        Ok(Some(PatternMatcher::new(p)?))
    }
}

/// Expands the wildcards of `src` (a clean absolute path) inside `root`, in
/// lexical order, as root-relative absolute paths. A match that is a
/// directory is not descended into. Without wildcards, returns `src` itself.
pub fn resolve_wildcards(root: &Path, src: &str, follow: bool) -> Result<Vec<String>> {
    let (fixed, wild) = split_wildcards(src);
    if wild.is_empty() {
        return Ok(vec![fixed]);
    }
    let comps: Vec<&str> = wild.split('/').collect();
    for c in &comps {
        validate_glob(c)?;
    }
    let base = root_path(root, &fixed, follow)?;
    let meta = fs::symlink_metadata(&base).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            FileOpError::NotFound {
                path: fixed.clone(),
            }
        } else {
            FileOpError::io("lstat", fixed.clone(), e)
        }
    })?;
    let mut out = Vec::new();
    if meta.is_dir() {
        walk_glob(root, &base, &comps, &mut out)?;
    }
    Ok(out)
}

fn walk_glob(root: &Path, dir: &Path, comps: &[&str], out: &mut Vec<String>) -> Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .map_err(|e| FileOpError::io("read directory", display(root, dir), e))?
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let Some(n) = name.to_str() else { continue };
        if !glob_match(comps[0], n)? {
            continue;
        }
        let p = dir.join(&name);
        if comps.len() == 1 {
            out.push(display(root, &p));
        } else if fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir()) {
            walk_glob(root, &p, &comps[1..], out)?;
        }
    }
    Ok(())
}
