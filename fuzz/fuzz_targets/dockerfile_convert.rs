//! Conversion to LLB never panics on any Dockerfile the parser accepts. Base images resolve to
//! a fixed config, so no network is involved.
#![no_main]
use kiln_dockerfile::convert::{ConvertOptions, ImageResolver, ResolvedImage, dockerfile_to_llb};

struct Fixed;

impl ImageResolver for Fixed {
    fn resolve(
        &self,
        reference: &str,
        _platform: &kiln_llb::pb::Platform,
    ) -> Result<ResolvedImage, String> {
        if reference.len() > 256 {
            return Err("reference too long".into());
        }
        Ok(ResolvedImage {
            reference: "docker.io/library/busybox:latest".into(),
            digest: format!("sha256:{}", "0".repeat(64)),
            config: Default::default(),
        })
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = dockerfile_to_llb(data, &ConvertOptions::default(), &Fixed);
});
