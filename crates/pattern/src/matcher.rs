//! moby/patternmatcher with Docker's semantics, which differ from gitignore: `*` and `?`
//! never cross `/`, `**` spans directories, a pattern matching a parent directory matches
//! everything below it, the last matching pattern wins, and a `!` exception can bring a path
//! back from an excluded directory.

use regex::Regex;

use crate::{PatternError, clean_path, validate_glob};

#[derive(Debug, Clone)]
enum Kind {
    Exact,
    /// `foo/**`: the text before the `**`.
    Prefix(String),
    /// `**/foo`: the text after the `**`.
    Suffix(String),
    Regex(Regex),
}

/// One compiled pattern.
#[derive(Debug, Clone)]
pub struct Pattern {
    /// The cleaned pattern without its `!`.
    pub text: String,
    /// True for a `!` exception.
    pub exclusion: bool,
    kind: Kind,
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(p) => path.starts_with(p.as_str()),
            Kind::Suffix(s) => {
                path.ends_with(s.as_str()) || s.strip_prefix('/').is_some_and(|rest| path == rest)
            }
            Kind::Regex(re) => re.is_match(path),
        }
    }

    /// The pattern without a trailing `/**` or `/*` (what fsutil compares directories with).
    fn without_trailing_glob(&self) -> &str {
        let t = self.text.strip_suffix("/**").unwrap_or(&self.text);
        t.strip_suffix("/*").unwrap_or(t)
    }
}

/// Per-pattern results for a directory, passed to its children by a walker
/// (patternmatcher's `MatchInfo`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MatchInfo {
    parent_matched: Vec<bool>,
}

/// A compiled list of patterns (`.dockerignore` excludes, or include/exclude filters).
#[derive(Debug, Clone)]
pub struct PatternMatcher {
    patterns: Vec<Pattern>,
    exclusions: bool,
    only_prefix_exceptions: bool,
}

impl PatternMatcher {
    /// Compiles patterns (as returned by [`crate::read_ignore_file`]); blank ones are skipped.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Self, PatternError> {
        let mut out = Vec::with_capacity(patterns.len());
        let mut exclusions = false;
        for p in patterns {
            let p = p.as_ref().trim();
            if p.is_empty() {
                continue;
            }
            let p = clean_path(p);
            let (exclusion, text) = match p.strip_prefix('!') {
                Some("") => return Err(PatternError::BareExclamation),
                Some(rest) => (true, rest.to_string()),
                None => (false, p),
            };
            exclusions |= exclusion;
            validate_glob(&text)?;
            let kind = compile(&text).ok_or_else(|| PatternError::BadPattern(text.clone()))?;
            out.push(Pattern {
                text,
                exclusion,
                kind,
            });
        }
        let only_prefix_exceptions = out.iter().filter(|p| p.exclusion).all(|p| {
            !p.without_trailing_glob()
                .contains(['*', '[', ']', '?', '^', '\\'])
        });
        Ok(PatternMatcher {
            patterns: out,
            exclusions,
            only_prefix_exceptions,
        })
    }

    /// The compiled patterns, in order.
    pub fn patterns(&self) -> &[Pattern] {
        &self.patterns
    }

    /// True if any pattern is a `!` exception.
    pub fn exclusions(&self) -> bool {
        self.exclusions
    }

    /// True if the `/`-separated, context-relative `path` is excluded: a pattern matches it or
    /// one of its parent directories, and no later `!` pattern re-includes it
    /// (patternmatcher's `MatchesOrParentMatches`).
    pub fn matches(&self, path: &str) -> bool {
        let parents = parent_prefixes(path);
        let mut matched = false;
        for p in &self.patterns {
            if p.exclusion != matched {
                continue;
            }
            if p.matches(path) || parents.iter().any(|d| p.matches(d)) {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// The walker form (patternmatcher's `MatchesUsingParentResults`, which fsutil uses while
    /// sending a context): pass the [`MatchInfo`] returned for the parent directory, or the
    /// default for a top-level entry.
    pub fn matches_with_parent(&self, path: &str, parent: &MatchInfo) -> (bool, MatchInfo) {
        let inherited = &parent.parent_matched;
        let use_parent = inherited.len() == self.patterns.len();
        let mut info = MatchInfo {
            parent_matched: vec![false; self.patterns.len()],
        };
        let mut matched = false;
        for (i, p) in self.patterns.iter().enumerate() {
            let mut hit = use_parent && inherited[i];
            if !hit {
                if p.exclusion != matched {
                    continue;
                }
                hit = p.matches(path)
                    || (!use_parent && parent_prefixes(path).iter().any(|d| p.matches(d)));
            }
            info.parent_matched[i] = hit;
            if hit {
                matched = !p.exclusion;
            }
        }
        (matched, info)
    }

    /// Whether a walker must still descend into `dir`, a directory that [`Self::matches`]
    /// excluded. Mirrors fsutil: an excluded directory is skipped whole only when every `!`
    /// exception is a plain path (no wildcards before a trailing `/*` or `/**`) and none of them
    /// lies under `dir`. With wildcard exceptions anything might come back, so descend.
    pub fn may_reinclude_under(&self, dir: &str) -> bool {
        if !self.exclusions {
            return false;
        }
        if !self.only_prefix_exceptions {
            return true;
        }
        let dir_slash = format!("{dir}/");
        self.patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| format!("{}/", p.without_trailing_glob()).starts_with(&dir_slash))
    }
}

/// `a`, `a/b` for `a/b/c`: the parents of a path, nearest to the root first, as
/// patternmatcher derives them from Go's `filepath.Dir`.
fn parent_prefixes(path: &str) -> Vec<String> {
    let parent = match path.rfind('/') {
        Some(i) => clean_path(&path[..=i]),
        None => return Vec::new(),
    };
    if parent == "." {
        return Vec::new();
    }
    let mut out: Vec<String> = parent
        .match_indices('/')
        .map(|(i, _)| parent[..i].to_string())
        .collect();
    out.push(parent);
    out
}

/// Turns a pattern into patternmatcher's match kinds; `None` if the regex does not compile.
fn compile(pattern: &str) -> Option<Kind> {
    #[derive(PartialEq)]
    enum Detected {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut re = String::from("^");
    let mut kind = Detected::Exact;
    let mut chars = pattern.chars().peekable();
    let mut first = true;
    while let Some(ch) = chars.next() {
        match ch {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    if kind == Detected::Exact {
                        kind = Detected::Prefix;
                    } else {
                        re.push_str(".*");
                        kind = Detected::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    kind = Detected::Regex;
                }
                if first {
                    kind = Detected::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                kind = Detected::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                kind = Detected::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => match chars.next() {
                Some(next) => {
                    re.push('\\');
                    re.push(next);
                    kind = Detected::Regex;
                }
                None => re.push_str("\\\\"),
            },
            '[' | ']' => {
                re.push(ch);
                kind = Detected::Regex;
            }
            _ => re.push(ch),
        }
        first = false;
    }
    Some(match kind {
        Detected::Exact => Kind::Exact,
        Detected::Prefix => Kind::Prefix(pattern.get(..pattern.len() - 2)?.to_string()),
        Detected::Suffix => Kind::Suffix(pattern.get(2..)?.to_string()),
        Detected::Regex => {
            re.push('$');
            Kind::Regex(Regex::new(&re).ok()?)
        }
    })
}
