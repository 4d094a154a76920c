//! .dockerignore reading and matching never panic.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (patterns, paths) = text.split_once('\0').unwrap_or((text, "a/b/c"));
    let patterns = kiln_pattern::read_ignore_file(patterns);
    if let Ok(m) = kiln_pattern::PatternMatcher::new(&patterns) {
        for p in paths.split('\n') {
            let _ = m.matches(p);
            let _ = m.may_reinclude_under(p);
        }
    }
});
