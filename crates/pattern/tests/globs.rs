//! Globs, wildcard splitting and the matcher as kiln-fileop's include/exclude filters use them
//! (moved here from kiln-fileop with the matcher).

use kiln_pattern::{MatchInfo, PatternMatcher, glob_match, split_wildcards, validate_glob};

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
    assert!(m.matches("a/b/x.md"));
    assert!(m.matches("x.md"));
    assert!(!m.matches("keep/x.md"));
    assert!(m.matches("build/deep/file"));
    assert!(m.matches("docs/a.txt"));
    assert!(!m.matches("docs/sub/a.txt"));
    assert!(!m.matches("src/main.rs"));
    let (hit, info) = m.matches_with_parent("build", &MatchInfo::default());
    assert!(hit);
    assert!(m.matches_with_parent("build/x", &info).0);
    let p = PatternMatcher::new(&["src/**"]).unwrap();
    assert!(p.matches("src/a/b"));
    assert!(!p.matches("srcx"));
    assert!(PatternMatcher::new(&["!"]).is_err());
}
