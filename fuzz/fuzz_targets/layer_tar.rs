//! Applying a hostile layer never panics and never writes outside its destination: the
//! destination lives inside a directory whose other contents are checked afterwards.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(outer) = tempfile::tempdir() else {
        return;
    };
    let dest = outer.path().join("dest");
    let sentinel = outer.path().join("sentinel");
    if std::fs::create_dir(&dest).is_err() || std::fs::write(&sentinel, b"x").is_err() {
        return;
    }
    let _ = kiln_oci::apply_layer(data, &dest);
    let names: Vec<_> = std::fs::read_dir(outer.path())
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert_eq!(names.len(), 2, "something was written beside the destination: {names:?}");
    assert_eq!(std::fs::read(&sentinel).ok().as_deref(), Some(&b"x"[..]));
});
