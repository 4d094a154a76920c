//! Shared by the conformance-case tests (convert.rs: conformance/kiln-cases; extra_cases.rs:
//! conformance/extra-cases): a resolver serving the cases' base image, a case's `args`, and the
//! check that our LLB equals the `llb.pb` BuildKit's dockerfile2llb wrote.

#![allow(dead_code)] // not every test binary uses every helper

use kiln_dockerfile::convert::{ConvertOptions, ImageResolver, ResolvedImage, dockerfile_to_llb};
use kiln_proto::Message;
use kiln_proto::pb;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const BASE_DIGEST: &str =
    "sha256:701b50c233765379725136673b7d7f955ed8a6f5c9ee8b845dde721dec0a8dc8";

/// Serves `localhost:5000/busybox` (tests/data/base-image.json, pinned to BASE_DIGEST).
pub struct TestResolver;

impl ImageResolver for TestResolver {
    fn resolve(&self, reference: &str, _: &pb::Platform) -> Result<ResolvedImage, String> {
        let name = reference.split(':').take(2).collect::<Vec<_>>().join(":");
        if name != "localhost:5000/busybox" && reference != "localhost:5000/busybox:latest" {
            return Err(format!("no such image in the test registry: {reference}"));
        }
        let path = manifest_dir().join("tests/data/base-image.json");
        let config = serde_json::from_slice(&std::fs::read(path).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
        Ok(ResolvedImage {
            reference: "localhost:5000/busybox:latest".into(),
            digest: BASE_DIGEST.into(),
            config,
        })
    }
}

pub fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn decode_ops(def: &pb::Definition) -> Vec<pb::Op> {
    def.def
        .iter()
        .map(|b| pb::Op::decode(b.as_slice()).expect("op decodes"))
        .collect()
}

pub fn local_unique(ops: &[pb::Op]) -> Option<String> {
    ops.iter().find_map(|op| match &op.op {
        Some(pb::op::Op::Source(s)) if s.identifier.starts_with("local://") => {
            s.attrs.get("local.unique").cloned()
        }
        _ => None,
    })
}

/// The `--opt KEY=VALUE` values of a case's `args` file, in order.
fn case_opts(dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[0] == "--opt")
        .map(|w| w[1].to_string())
        .collect()
}

/// `--opt target=X` and `--opt build-arg:K=V` from a case's `args` file.
pub fn case_args(dir: &Path) -> (Option<String>, BTreeMap<String, String>) {
    let (mut target, mut args) = (None, BTreeMap::new());
    for opt in case_opts(dir) {
        if let Some(t) = opt.strip_prefix("target=") {
            target = Some(t.to_string());
        } else if let Some(kv) = opt.strip_prefix("build-arg:")
            && let Some((k, v)) = kv.split_once('=')
        {
            args.insert(k.to_string(), v.to_string());
        }
    }
    (target, args)
}

/// The case's Dockerfile: `--opt filename=X` from its `args` file, else `Dockerfile`.
pub fn case_dockerfile(dir: &Path) -> PathBuf {
    let name = case_opts(dir)
        .iter()
        .find_map(|o| o.strip_prefix("filename=").map(str::to_string))
        .unwrap_or_else(|| "Dockerfile".into());
    dir.join(name)
}

pub fn ignore_patterns(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("ctx/.dockerignore"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// LLB: as dockerfile2llb made `dir/llb.pb` from the case's Dockerfile, without build args or
/// .dockerignore (dockerfile2llb takes neither; only `-target`). `what` names the case in
/// failures.
/// Conversion options as a build of the case gives them: its target, build args and
/// .dockerignore.
pub fn build_options(dir: &Path) -> ConvertOptions {
    let (target, build_args) = case_args(dir);
    ConvertOptions {
        target,
        build_args,
        ignore_patterns: ignore_patterns(dir),
        local_unique: Some("test".into()),
        ..ConvertOptions::default()
    }
}

pub fn check_llb_of(dir: &Path, what: &str) {
    let want_def =
        pb::Definition::decode(std::fs::read(dir.join("llb.pb")).unwrap().as_slice()).unwrap();
    let want = decode_ops(&want_def);
    let (target, _) = case_args(dir);
    // llb.pb was written by BuildKit's dockerfile2llb with no SourceMap: no file name.
    let opts = ConvertOptions {
        target,
        local_unique: local_unique(&want),
        source_map_filename: String::new(),
        ..ConvertOptions::default()
    };
    let dockerfile = std::fs::read(case_dockerfile(dir)).unwrap();
    let got_def = dockerfile_to_llb(&dockerfile, &opts, &TestResolver)
        .unwrap_or_else(|e| panic!("{what}: {e}"))
        .definition;
    let got = decode_ops(&got_def);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            kiln_llb::op_digest(g),
            kiln_llb::op_digest(w),
            "{what}: op {i} differs\n got: {g:#?}\nwant: {w:#?}"
        );
    }
    assert_eq!(got.len(), want.len(), "{what}: number of ops");
    for (d, w) in &want_def.metadata {
        let g = got_def
            .metadata
            .get(d)
            .unwrap_or_else(|| panic!("{what}: no metadata for {d}"));
        assert_eq!(g.description, w.description, "{what}: description of {d}");
        assert_eq!(g.caps, w.caps, "{what}: caps of {d}");
    }
    let (g, w) = (got_def.source.unwrap(), want_def.source.unwrap());
    assert_eq!(g.infos, w.infos, "{what}: source infos");
    for (d, wl) in &w.locations {
        assert_eq!(g.locations.get(d), Some(wl), "{what}: locations of {d}");
    }
    assert_eq!(g.locations.len(), w.locations.len(), "{what}: located ops");
}
