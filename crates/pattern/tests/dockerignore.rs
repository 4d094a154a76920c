//! `.dockerignore` behaviour: single-pattern cases modelled on moby/patternmatcher's tests, the
//! reader's cleaning rules, and the kiln-cases/05-dockerignore context checked against what
//! BuildKit actually kept.

use kiln_pattern::{MatchInfo, PatternError, PatternMatcher, clean_path, read_ignore_file};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn matcher(patterns: &[&str]) -> PatternMatcher {
    let owned: Vec<String> = patterns.iter().map(|s| s.to_string()).collect();
    PatternMatcher::new(&owned).unwrap_or_else(|e| panic!("{patterns:?}: {e}"))
}

#[test]
fn single_pattern_matches() {
    let cases: &[(&str, &str, bool)] = &[
        ("**", "file", true),
        ("**", "file/", true),
        ("**/", "file", true),
        ("**", "/", true),
        ("**", "dir/file", true),
        ("**/**", "dir/file", true),
        ("dir/**", "dir/file", true),
        ("dir/**", "dir/dir2/file", true),
        ("**/dir", "dir", true),
        ("**/dir", "dir/file", true),
        ("**/dir2/*", "dir/dir2/file", true),
        ("**/dir2/**", "dir/dir2/dir3/file", true),
        ("**file", "file", true),
        ("**file", "dir/file", true),
        ("**/file", "dir/dir/file", true),
        ("**/file*", "dir/dir/file.txt", true),
        ("**/file*txt", "dir/dir/file.txt", true),
        ("**/**/*.txt", "dir/dir/file.txt", true),
        ("**/**/*.txt2", "dir/dir/file.txt", false),
        ("**/*.txt", "file.txt", true),
        ("**/**/*.txt", "file.txt", true),
        ("a**/*.txt", "a/file.txt", true),
        ("a**/*.txt", "a/dir/dir/file.txt", true),
        ("a/*.txt", "a/dir/file.txt", false),
        ("a/*.txt", "a/file.txt", true),
        ("a/*.txt**", "a/file.txt", true),
        ("a[b-d]e", "ae", false),
        ("a[b-d]e", "ace", true),
        ("a[b-d]e", "aae", false),
        ("a[^b-d]e", "aze", true),
        (".*", ".foo", true),
        (".*", "foo", false),
        ("abc.def", "abcdef", false),
        ("abc.def", "abc.def", true),
        ("abc?def", "abcZdef", true),
        ("abc?def", "abcdef", false),
        ("abc?def", "abc/def", false),
        ("a\\\\", "a\\", true),
        ("a\\*b", "a*b", true),
        ("a\\*b", "axb", false),
        ("**/foo/bar", "foo/bar", true),
        ("**/foo/bar", "dir/dir2/foo/bar", true),
        ("abc/**", "abc", false),
        ("abc/**", "abc/def/ghi", true),
        ("**/.foo", ".foo", true),
        ("**/.foo", "bar.foo", false),
        ("a(b)c/def", "a(b)c/def", true),
        ("a(b)c/def", "a(b)c/xyz", false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
        ),
        // `*` stops at `/`, but a matching parent directory excludes what is under it.
        ("*", "a/b/c", true),
        ("*.tmp", "nested/a.tmp", false),
        ("docs", "docs/api/x.md", true),
        ("doc", "docs/x", false),
    ];
    let mut failures = Vec::new();
    for &(pattern, path, want) in cases {
        if matcher(&[pattern]).matches(path) != want {
            failures.push(format!("{pattern:?} on {path:?} should be {want}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn last_match_wins_and_exceptions_reinclude() {
    let m = matcher(&["*.log", "!keep.log", "keep.log/x"]);
    assert!(m.matches("a.log"));
    assert!(!m.matches("keep.log"));
    assert!(m.exclusions());

    let m = matcher(&["secrets", "!secrets/public.pem"]);
    assert!(m.matches("secrets"));
    assert!(m.matches("secrets/db.env"));
    assert!(!m.matches("secrets/public.pem"));

    // A later plain pattern excludes again.
    let m = matcher(&["a", "!a/b", "a/b/c"]);
    assert!(!m.matches("a/b/d"));
    assert!(m.matches("a/b/c"));
}

#[test]
fn bad_patterns_are_errors() {
    for p in ["[", "a[", "[]", "[a-]", "a\\", "[^]"] {
        let r = PatternMatcher::new(&[p.to_string()]);
        assert!(
            matches!(r, Err(PatternError::BadPattern(_))),
            "{p:?}: {r:?}"
        );
    }
    assert_eq!(
        PatternMatcher::new(&["!".to_string()]).unwrap_err(),
        PatternError::BareExclamation
    );
    assert!(PatternMatcher::new(&["[a-c]".to_string(), "[\\]]".to_string()]).is_ok());
}

#[test]
fn reader_cleans_patterns() {
    let file = "\u{feff}# comment\n  # indented is a pattern\n\n  /abs/path/  \n! /neg/./x/../y\nfoo//bar\n/\n..\n!\n\r\n";
    assert_eq!(
        read_ignore_file(file),
        [
            "# indented is a pattern",
            "abs/path",
            "!neg/y",
            "foo/bar",
            "/",
            "..",
            "!"
        ]
    );
    assert_eq!(clean_path(""), ".");
    assert_eq!(clean_path("a/../.."), "..");
    assert_eq!(clean_path("/../a/"), "/a");
}

#[test]
fn skipping_excluded_directories() {
    // Plain exceptions: only directories that contain one must be walked.
    let m = matcher(&["build", "!build/out/app.bin", "tmp"]);
    assert!(m.may_reinclude_under("build"));
    assert!(m.may_reinclude_under("build/out"));
    assert!(!m.may_reinclude_under("tmp"));
    assert!(!m.may_reinclude_under("buil"));
    // No exceptions at all: every excluded directory can be skipped.
    assert!(!matcher(&["build"]).may_reinclude_under("build"));
    // A wildcard exception could match anywhere.
    assert!(matcher(&["build", "!**/*.bin"]).may_reinclude_under("tmp"));
    // A trailing `/**` on a plain exception still counts as plain.
    let m = matcher(&["*", "!src/**"]);
    assert!(m.may_reinclude_under("src"));
    assert!(!m.may_reinclude_under("docs"));
}

#[test]
fn walker_form_agrees_with_direct_matching() {
    let m = matcher(&["a", "!a/b/*.txt", "**/*.log"]);
    let (top, info) = m.matches_with_parent("a", &MatchInfo::default());
    assert!(top);
    let (mid, info2) = m.matches_with_parent("a/b", &info);
    assert!(mid);
    assert!(!m.matches_with_parent("a/b/x.txt", &info2).0);
    assert!(m.matches_with_parent("a/b/x.log", &info2).0);
    for p in ["a/b/x.txt", "a/b/x.log", "c/d.log", "c/d.txt"] {
        assert_eq!(
            m.matches_with_parent(p, &MatchInfo::default()).0,
            m.matches(p),
            "{p}"
        );
    }
}

fn case_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance/kiln-cases/05-dockerignore")
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, bool)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let is_dir = e.file_type().unwrap().is_dir();
        out.push((rel, is_dir));
        if is_dir {
            walk(root, &path, out);
        }
    }
}

#[test]
fn kiln_case_05_dockerignore() {
    let case = case_dir();
    let ctx = case.join("ctx");
    let patterns = read_ignore_file(&std::fs::read_to_string(ctx.join(".dockerignore")).unwrap());
    let m = PatternMatcher::new(&patterns).unwrap();

    let mut entries = Vec::new();
    walk(&ctx, &ctx, &mut entries);
    let mut got = BTreeSet::new();
    for (rel, is_dir) in &entries {
        if m.matches(rel) {
            continue;
        }
        // Directories appear when kept themselves or as parents of a kept entry.
        got.insert((rel.clone(), *is_dir));
        let mut parent = Path::new(rel).parent();
        while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
            got.insert((p.to_string_lossy().into_owned(), true));
            parent = p.parent();
        }
    }

    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(case.join("expected.json")).unwrap()).unwrap();
    let want: BTreeSet<(String, bool)> = expected["rootfs"]
        .as_object()
        .unwrap()
        .iter()
        .filter_map(|(k, v)| {
            let rel = k.strip_prefix("ctx/")?;
            Some((rel.to_string(), v["type"] == "dir"))
        })
        .collect();
    assert_eq!(got, want);
}
