//! Path patterns: Go's `filepath.Match` globs (COPY/rm wildcards) and
//! moby/patternmatcher (include/exclude patterns, `.dockerignore` style,
//! with `**` and `!` exceptions).

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use regex::Regex;

use crate::error::{FileOpError, Result};
use crate::resolve::{display, root_path};

fn bad(pattern: &str, reason: &str) -> FileOpError {
    FileOpError::Pattern {
        pattern: pattern.to_string(),
        reason: reason.to_string(),
    }
}

/// True when `name` holds an unescaped `*`, `?` or `[`.
pub fn contains_wildcards(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Splits a clean absolute path into the part before the first component
/// holding a wildcard and the rest (fsutil's `splitWildcards`).
pub fn split_wildcards(p: &str) -> (String, String) {
    let mut fixed = Vec::new();
    let mut wild = Vec::new();
    for c in p.split('/').filter(|c| !c.is_empty()) {
        if wild.is_empty() && !contains_wildcards(c) {
            fixed.push(c);
        } else {
            wild.push(c);
        }
    }
    (format!("/{}", fixed.join("/")), wild.join("/"))
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

/// Checks glob syntax the way `filepath.Match` would reject it.
pub fn validate_glob(pattern: &str) -> Result<()> {
    let p: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(bad(pattern, "trailing backslash"));
                }
                i += 2;
            }
            '[' => {
                let (_, len) = class(&p[i..], '\0').ok_or_else(|| bad(pattern, "bad class"))?;
                i += len;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Go's `filepath.Match` on one slash path.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob(&p, &n).ok_or_else(|| bad(pattern, "syntax error in pattern"))
}

fn glob(p: &[char], n: &[char]) -> Option<bool> {
    let Some(&first) = p.first() else {
        return Some(n.is_empty());
    };
    match first {
        '*' => {
            for i in 0..=n.len() {
                if i > 0 && n[i - 1] == '/' {
                    break;
                }
                if glob(&p[1..], &n[i..])? {
                    return Some(true);
                }
            }
            Some(false)
        }
        '?' => match n.first() {
            Some(c) if *c != '/' => glob(&p[1..], &n[1..]),
            _ => Some(false),
        },
        '[' => {
            let c = n.first().copied().unwrap_or('\0');
            let (hit, len) = class(p, c)?;
            if n.is_empty() || c == '/' || !hit {
                return Some(false);
            }
            glob(&p[len..], &n[1..])
        }
        '\\' => {
            let lit = *p.get(1)?;
            if n.first() == Some(&lit) {
                glob(&p[2..], &n[1..])
            } else {
                Some(false)
            }
        }
        c => {
            if n.first() == Some(&c) {
                glob(&p[1..], &n[1..])
            } else {
                Some(false)
            }
        }
    }
}

/// Parses a `[...]` class at the start of `p`; returns whether `c` is in it
/// and the class length, or None when malformed.
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = p.get(i) == Some(&'^');
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut ranges = 0;
    loop {
        let ch = *p.get(i)?;
        if ch == ']' && ranges > 0 {
            i += 1;
            break;
        }
        let (lo, l) = esc(&p[i..])?;
        i += l;
        let mut hi = lo;
        if p.get(i) == Some(&'-') {
            let (h, l) = esc(&p[i + 1..])?;
            hi = h;
            i += 1 + l;
        }
        if lo <= c && c <= hi {
            hit = true;
        }
        ranges += 1;
    }
    Some((hit != negate, i))
}

fn esc(p: &[char]) -> Option<(char, usize)> {
    match p.first()? {
        '-' | ']' => None,
        '\\' => Some((*p.get(1)?, 2)),
        c => Some((*c, 1)),
    }
}

/// Go's `filepath.Clean` for relative or absolute paths.
fn go_clean(p: &str) -> String {
    let rooted = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !rooted {
                    out.push("..");
                }
            }
            c => out.push(c),
        }
    }
    let body = out.join("/");
    match (rooted, body.is_empty()) {
        (true, _) => format!("/{body}"),
        (false, true) => ".".to_string(),
        (false, false) => body,
    }
}

#[derive(Debug)]
enum Kind {
    Exact,
    Prefix(String),
    Suffix(String),
    Regex(Regex),
}

#[derive(Debug)]
struct Pattern {
    cleaned: String,
    exclusion: bool,
    kind: Kind,
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.cleaned,
            Kind::Prefix(p) => path.starts_with(p.as_str()),
            Kind::Suffix(s) => {
                path.ends_with(s.as_str()) || (s.starts_with('/') && path == &s[1..])
            }
            Kind::Regex(r) => r.is_match(path),
        }
    }
}

/// Per-pattern results for a directory, handed to its children so that a
/// pattern matching a parent matches everything below it.
#[derive(Debug, Clone, Default)]
pub struct MatchInfo(Vec<bool>);

/// moby/patternmatcher: later patterns win; `!p` re-includes.
#[derive(Debug)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
}

impl PatternMatcher {
    /// Compiles `patterns`; blank ones are ignored.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self> {
        let mut out = Vec::new();
        let mut exclusions = false;
        for raw in patterns {
            let t = raw.as_ref().trim();
            if t.is_empty() {
                continue;
            }
            let mut p = go_clean(t);
            let mut exclusion = false;
            if let Some(rest) = p.strip_prefix('!') {
                if rest.is_empty() {
                    return Err(bad(t, "illegal exclusion pattern: \"!\""));
                }
                exclusion = true;
                exclusions = true;
                p = rest.to_string();
            }
            validate_glob(&p)?;
            let kind = compile(&p).map_err(|e| bad(t, &e))?;
            out.push(Pattern {
                cleaned: p,
                exclusion,
                kind,
            });
        }
        Ok(PatternMatcher {
            patterns: out,
            exclusions,
        })
    }

    /// True when some pattern is a `!` exception.
    pub fn exclusions(&self) -> bool {
        self.exclusions
    }

    /// The patterns without their `!`, and whether each is an exception.
    pub fn patterns(&self) -> impl Iterator<Item = (&str, bool)> {
        self.patterns
            .iter()
            .map(|p| (p.cleaned.as_str(), p.exclusion))
    }

    /// Whether `file` (relative slash path) matches, using the parent
    /// directory's results; with an empty `parent`, parent dirs are checked.
    pub fn matches_with_parent(&self, file: &str, parent: &MatchInfo) -> (bool, MatchInfo) {
        let mut matched = false;
        let mut info = Vec::with_capacity(self.patterns.len());
        let have_parent = parent.0.len() == self.patterns.len() && !parent.0.is_empty();
        for (i, pat) in self.patterns.iter().enumerate() {
            let mut m = have_parent && parent.0[i];
            if !m {
                if pat.exclusion != matched {
                    info.push(false);
                    continue;
                }
                m = pat.matches(file);
                if !m && !have_parent {
                    m = parents(file).any(|d| pat.matches(d));
                }
            }
            info.push(m);
            if m {
                matched = !pat.exclusion;
            }
        }
        (matched, MatchInfo(info))
    }

    /// Whether `file` or one of its parents matches.
    pub fn matches_or_parent_matches(&self, file: &str) -> bool {
        self.matches_with_parent(file, &MatchInfo::default()).0
    }
}

/// "a", "a/b" for "a/b/c".
fn parents(file: &str) -> impl Iterator<Item = &str> {
    file.char_indices()
        .filter(|(_, c)| *c == '/')
        .map(move |(i, _)| &file[..i])
}

#[derive(PartialEq, Clone, Copy)]
enum Detected {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// patternmatcher's compile: cheap exact/prefix/suffix forms where the
/// pattern allows, a regex otherwise.
fn compile(p: &str) -> std::result::Result<Kind, String> {
    let mut re = String::from("^");
    let mut detected = Detected::Exact;
    let chars: Vec<char> = p.chars().collect();
    let mut i = 0;
    let mut token = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    if detected == Detected::Exact {
                        detected = Detected::Prefix;
                    } else {
                        re.push_str(".*");
                        detected = Detected::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    detected = Detected::Regex;
                }
                if token == 0 {
                    detected = Detected::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                detected = Detected::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                detected = Detected::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => {
                if let Some(n) = chars.get(i) {
                    re.push_str(&regex::escape(&n.to_string()));
                    i += 1;
                    detected = Detected::Regex;
                } else {
                    re.push_str("\\\\");
                }
            }
            '[' | ']' => {
                re.push(ch);
                detected = Detected::Regex;
            }
            c => re.push(c),
        }
        token += 1;
    }
    match detected {
        Detected::Exact => Ok(Kind::Exact),
        Detected::Prefix => Ok(Kind::Prefix(p[..p.len() - 2].to_string())),
        Detected::Suffix => Ok(Kind::Suffix(p.get(2..).unwrap_or("").to_string())),
        Detected::Regex => {
            re.push('$');
            Regex::new(&re).map(Kind::Regex).map_err(|e| e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("app?.conf", "app1.conf").unwrap());
        assert!(!glob_match("app?.conf", "app10.conf").unwrap());
        assert!(glob_match("app[12]*.conf", "app10.conf").unwrap());
        assert!(!glob_match("app[^12]*.conf", "app10.conf").unwrap());
        assert!(glob_match("*", ".hidden").unwrap());
        assert!(!glob_match("*", "a/b").unwrap());
        assert!(glob_match("a\\*", "a*").unwrap());
        assert!(glob_match("[a-c]x", "bx").unwrap());
        assert!(validate_glob("[").is_err());
        assert!(validate_glob("a\\").is_err());
    }

    #[test]
    fn split() {
        assert_eq!(
            split_wildcards("/a/b*/c"),
            ("/a".to_string(), "b*/c".to_string())
        );
        assert_eq!(split_wildcards("/a/b"), ("/a/b".to_string(), String::new()));
        assert_eq!(split_wildcards("/*"), ("/".to_string(), "*".to_string()));
    }

    #[test]
    fn matcher() {
        let m = PatternMatcher::new(&["**/*.md", "!keep/**", "build", "docs/*.txt"]).unwrap();
        assert!(m.matches_or_parent_matches("a/b/x.md"));
        assert!(m.matches_or_parent_matches("x.md"));
        assert!(!m.matches_or_parent_matches("keep/x.md"));
        assert!(m.matches_or_parent_matches("build/deep/file"));
        assert!(m.matches_or_parent_matches("docs/a.txt"));
        assert!(!m.matches_or_parent_matches("docs/sub/a.txt"));
        assert!(!m.matches_or_parent_matches("src/main.rs"));
        let (hit, info) = m.matches_with_parent("build", &MatchInfo::default());
        assert!(hit);
        assert!(m.matches_with_parent("build/x", &info).0);
        let p = PatternMatcher::new(&["src/**"]).unwrap();
        assert!(p.matches_or_parent_matches("src/a/b"));
        assert!(!p.matches_or_parent_matches("srcx"));
        assert!(PatternMatcher::new(&["!"]).is_err());
    }
}
