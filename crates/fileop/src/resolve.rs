//! Path resolution inside a root directory: every symlink is resolved as if
//! the root were `/`, and `..` never climbs above it (the semantics of
//! `openat2(RESOLVE_IN_ROOT)` and of continuity's `fs.RootPath`, which
//! BuildKit uses). File ops run on snapshots nobody else mutates meanwhile,
//! so a component walker is race-free enough here.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{FileOpError, Result};

/// Linux's own limit on symlinks followed during one lookup.
const MAX_LINKS: usize = 40;

/// Lexically cleans `p` into an absolute slash path (Go's `path.Clean("/" + p)`).
pub fn clean(p: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            c => out.push(c),
        }
    }
    let mut s = String::with_capacity(p.len() + 1);
    for c in &out {
        s.push('/');
        s.push_str(c);
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// BuildKit's `cleanPath`: absolute and clean, but a trailing `/` or `/.`
/// survives because it changes what COPY does with the destination.
pub fn clean_keep_trailing(p: &str) -> String {
    let mut s = clean(p);
    if p.ends_with("/.") {
        if s != "/" {
            s.push('/');
        }
        s.push('.');
    } else if p.ends_with('/') && s != "/" {
        s.push('/');
    }
    s
}

/// Resolves `path` inside `root`, following symlinks in every component and,
/// when `follow_final`, in the last one too. Components that do not exist are
/// kept literally, so the result can name a path still to be created.
pub fn resolve(root: &Path, path: &str, follow_final: bool) -> Result<PathBuf> {
    resolve_bytes(root, path.as_bytes(), follow_final)
}

/// `resolve` for a path that need not be UTF-8 (names read from archives).
pub(crate) fn resolve_bytes(root: &Path, path: &[u8], follow_final: bool) -> Result<PathBuf> {
    let mut pending: VecDeque<OsString> = split(path).collect();
    let mut cur = root.to_path_buf();
    let mut depth = 0usize;
    let mut links = 0usize;
    while let Some(comp) = pending.pop_front() {
        if comp == ".." {
            if depth > 0 {
                cur.pop();
                depth -= 1;
            }
            continue;
        }
        cur.push(&comp);
        depth += 1;
        if pending.is_empty() && !follow_final {
            break;
        }
        let Ok(meta) = fs::symlink_metadata(&cur) else {
            continue;
        };
        if !meta.file_type().is_symlink() {
            continue;
        }
        links += 1;
        if links > MAX_LINKS {
            let shown = String::from_utf8_lossy(path);
            return Err(FileOpError::TooManyLinks {
                path: clean(&shown),
            });
        }
        let target =
            fs::read_link(&cur).map_err(|e| FileOpError::io("readlink", display(root, &cur), e))?;
        cur.pop();
        depth -= 1;
        let tb = target.as_os_str().as_bytes();
        if tb.starts_with(b"/") {
            cur = root.to_path_buf();
            depth = 0;
        }
        let comps: Vec<OsString> = split(tb).collect();
        for c in comps.into_iter().rev() {
            pending.push_front(c);
        }
    }
    Ok(cur)
}

/// fsutil's `rootPath`: with `follow` the last component is resolved too,
/// otherwise only its parent is and a symlink named last stays a symlink.
pub fn root_path(root: &Path, path: &str, follow: bool) -> Result<PathBuf> {
    let p = clean(path);
    if p == "/" {
        return Ok(root.to_path_buf());
    }
    if follow {
        return resolve(root, &p, true);
    }
    let (dir, base) = p.rsplit_once('/').unwrap_or(("", p.as_str()));
    Ok(resolve(root, dir, true)?.join(base))
}

/// The components of a slash path, without empty and `.` ones.
fn split(p: &[u8]) -> impl Iterator<Item = OsString> + '_ {
    p.split(|b| *b == b'/')
        .filter(|c| !c.is_empty() && *c != b".")
        .map(|c| OsStr::from_bytes(c).to_os_string())
}

/// How a host path inside `root` is shown in errors: `/rel/path`.
pub fn display(root: &Path, host: &Path) -> String {
    match host.strip_prefix(root) {
        Ok(rel) => format!("/{}", rel.to_string_lossy()),
        Err(_) => host.to_string_lossy().into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn clean_paths() {
        assert_eq!(clean(""), "/");
        assert_eq!(clean("a/../../b/./c/"), "/b/c");
        assert_eq!(clean_keep_trailing("a/b/"), "/a/b/");
        assert_eq!(clean_keep_trailing("a/."), "/a/.");
        assert_eq!(clean_keep_trailing("/"), "/");
        assert_eq!(clean_keep_trailing("."), "/");
        assert_eq!(clean_keep_trailing("/."), "/.");
    }

    #[test]
    fn symlinks_stay_inside_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        fs::create_dir_all(r.join("real/sub")).unwrap();
        symlink("/real", r.join("abs")).unwrap();
        symlink("../../../../real", r.join("climb")).unwrap();
        symlink("/real", r.join("etc")).unwrap();
        symlink("loop", r.join("loop")).unwrap();
        assert_eq!(resolve(r, "/abs/sub", true).unwrap(), r.join("real/sub"));
        assert_eq!(resolve(r, "climb/sub", true).unwrap(), r.join("real/sub"));
        assert_eq!(
            resolve(r, "/../../etc/passwd", true).unwrap(),
            r.join("real/passwd")
        );
        assert_eq!(resolve(r, "/abs", false).unwrap(), r.join("abs"));
        assert_eq!(root_path(r, "/abs", false).unwrap(), r.join("abs"));
        assert_eq!(resolve(r, "/missing/x", true).unwrap(), r.join("missing/x"));
        assert!(matches!(
            resolve(r, "/loop", true),
            Err(FileOpError::TooManyLinks { .. })
        ));
    }
}
