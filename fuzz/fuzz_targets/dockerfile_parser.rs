//! The Dockerfile parser never panics, and what it accepts dumps.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(result) = kiln_dockerfile::parser::parse(data) {
        let _ = kiln_dockerfile::parser::dump(&result.ast);
    }
});
