//! The conformance cases in conformance/kiln-cases: our LLB must equal the `llb.pb` BuildKit's
//! dockerfile2llb wrote (op for op, digests included), and our image config and history must
//! equal `expected.json`.

use kiln_dockerfile::convert::{ConvertOptions, ImageResolver, ResolvedImage, dockerfile_to_llb};
use kiln_proto::Message;
use kiln_proto::pb;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const BASE_DIGEST: &str = "sha256:701b50c233765379725136673b7d7f955ed8a6f5c9ee8b845dde721dec0a8dc8";

struct TestResolver;

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

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn case_dir(prefix: &str) -> PathBuf {
    let root = manifest_dir().join("../../conformance/kiln-cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    dirs.sort();
    dirs.pop().unwrap_or_else(|| panic!("no case {prefix}"))
}

fn decode_ops(def: &pb::Definition) -> Vec<pb::Op> {
    def.def
        .iter()
        .map(|b| pb::Op::decode(b.as_slice()).expect("op decodes"))
        .collect()
}

fn local_unique(ops: &[pb::Op]) -> Option<String> {
    ops.iter().find_map(|op| match &op.op {
        Some(pb::op::Op::Source(s)) if s.identifier.starts_with("local://") => {
            s.attrs.get("local.unique").cloned()
        }
        _ => None,
    })
}

/// `--opt target=X` and `--opt build-arg:K=V` from a case's `args` file.
fn case_args(dir: &Path) -> (Option<String>, BTreeMap<String, String>) {
    let text = std::fs::read_to_string(dir.join("args")).unwrap_or_default();
    let words: Vec<&str> = text.split_whitespace().collect();
    let (mut target, mut args) = (None, BTreeMap::new());
    for w in words.windows(2) {
        if w[0] != "--opt" {
            continue;
        }
        if let Some(t) = w[1].strip_prefix("target=") {
            target = Some(t.to_string());
        } else if let Some(kv) = w[1].strip_prefix("build-arg:")
            && let Some((k, v)) = kv.split_once('=')
        {
            args.insert(k.to_string(), v.to_string());
        }
    }
    (target, args)
}

fn ignore_patterns(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("ctx/.dockerignore"))
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect()
}

/// LLB: as dockerfile2llb made llb.pb, without build args or .dockerignore.
fn check_llb(prefix: &str) {
    let dir = case_dir(prefix);
    let want_def =
        pb::Definition::decode(std::fs::read(dir.join("llb.pb")).unwrap().as_slice()).unwrap();
    let want = decode_ops(&want_def);
    let (target, _) = case_args(&dir);
    let opts = ConvertOptions {
        target,
        local_unique: local_unique(&want),
        ..ConvertOptions::default()
    };
    let dockerfile = std::fs::read(dir.join("Dockerfile")).unwrap();
    let got_def = dockerfile_to_llb(&dockerfile, &opts, &TestResolver)
        .unwrap_or_else(|e| panic!("{prefix}: {e}"))
        .definition;
    let got = decode_ops(&got_def);
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            kiln_llb::op_digest(g),
            kiln_llb::op_digest(w),
            "{prefix}: op {i} differs\n got: {g:#?}\nwant: {w:#?}"
        );
    }
    assert_eq!(got.len(), want.len(), "{prefix}: number of ops");
    for (d, w) in &want_def.metadata {
        let g = got_def
            .metadata
            .get(d)
            .unwrap_or_else(|| panic!("{prefix}: no metadata for {d}"));
        assert_eq!(g.description, w.description, "{prefix}: description of {d}");
        assert_eq!(g.caps, w.caps, "{prefix}: caps of {d}");
    }
}

/// Config and history: with the case's args and .dockerignore, as expected.json was built.
fn check_config(prefix: &str) {
    let dir = case_dir(prefix);
    let (target, build_args) = case_args(&dir);
    let opts = ConvertOptions {
        target,
        build_args,
        ignore_patterns: ignore_patterns(&dir),
        local_unique: Some("test".into()),
        ..ConvertOptions::default()
    };
    let dockerfile = std::fs::read(dir.join("Dockerfile")).unwrap();
    let image = dockerfile_to_llb(&dockerfile, &opts, &TestResolver)
        .unwrap_or_else(|e| panic!("{prefix}: {e}"))
        .image;
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let got_config = serde_json::to_value(&image.config).unwrap();
    assert_eq!(got_config, expected["config"], "{prefix}: config");
    let got_history: Vec<serde_json::Value> = image
        .history
        .iter()
        .map(|h| serde_json::json!({"created_by": h.created_by, "empty_layer": h.empty_layer}))
        .collect();
    assert_eq!(
        serde_json::Value::Array(got_history),
        expected["history"],
        "{prefix}: history"
    );
}

macro_rules! cases {
    ($($name:ident: $prefix:literal),* $(,)?) => {
        mod llb {
            $(#[test] fn $name() { super::check_llb($prefix) })*
        }
        mod config {
            $(#[test] fn $name() { super::check_config($prefix) })*
        }
    };
}

cases! {
    case01: "01-",
    case02: "02-",
    case03: "03-",
    case04: "04-",
    case05: "05-",
    case06: "06-",
    case07: "07-",
    case08: "08-",
    case09: "09-",
    case10: "10-",
    case12: "12-",
    case13: "13-",
    case14: "14-",
}

fn convert_err(dockerfile: &str, target: Option<&str>) -> String {
    let opts = ConvertOptions {
        target: target.map(String::from),
        local_unique: Some("x".into()),
        ..ConvertOptions::default()
    };
    match dockerfile_to_llb(dockerfile.as_bytes(), &opts, &TestResolver) {
        Ok(_) => panic!("conversion of {dockerfile:?} should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn run_mount_is_rejected_with_its_line() {
    let e = convert_err(
        "FROM localhost:5000/busybox\nRUN --mount=type=cache,target=/c true\n",
        None,
    );
    assert_eq!(
        e,
        "dockerfile line 2: RUN: RUN --mount is not supported yet"
    );
}

#[test]
fn errors_name_the_problem() {
    assert!(convert_err("", None).contains("cannot be empty"));
    assert!(
        convert_err("FROM localhost:5000/busybox\n", Some("nope"))
            .contains("\"nope\" could not be found")
    );
    assert!(
        convert_err("FROM localhost:5000/busybox\nCOPY --frm=a b c\n", None)
            .contains("unknown flag: --frm")
    );
    assert!(convert_err("FROM unknown-image\n", None).contains("unknown-image"));
    let e = convert_err("FROM localhost:5000/busybox\nCOPY --from=$X a b\n", None);
    assert!(
        e.contains("variable expansion is not supported for --from"),
        "{e}"
    );
}
