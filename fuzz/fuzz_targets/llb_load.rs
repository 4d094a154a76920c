//! Loading a Definition never panics, whatever the bytes.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = kiln_llb::load(data);
});
