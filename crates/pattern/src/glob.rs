//! Go's `filepath.Match` on `/`-separated paths, and the wildcard helpers COPY uses.

use crate::PatternError;

fn bad(pattern: &str) -> PatternError {
    PatternError::BadPattern(pattern.to_string())
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

/// Checks glob syntax the way `filepath.Match` would reject it.
pub fn validate_glob(pattern: &str) -> Result<(), PatternError> {
    let p: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' => {
                if i + 1 >= p.len() {
                    return Err(bad(pattern));
                }
                i += 2;
            }
            '[' => {
                let (_, len) = class(&p[i..], '\0').ok_or_else(|| bad(pattern))?;
                i += len;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Go's `filepath.Match` on one slash path.
pub fn glob_match(pattern: &str, name: &str) -> Result<bool, PatternError> {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    glob(&p, &n).ok_or_else(|| bad(pattern))
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
