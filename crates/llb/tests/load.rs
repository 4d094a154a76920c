//! Loading Definitions: what BuildKit wrote loads; broken graphs are refused with errors that
//! say what is wrong.

use kiln_llb::{LoadError, Output, Vertex, load, marshal, pb};
use kiln_proto::Message;
use std::path::PathBuf;

fn source(identifier: &str) -> Output {
    let op = pb::Op {
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: identifier.into(),
            ..Default::default()
        })),
        ..Default::default()
    };
    Vertex::output(op, vec![], Default::default())
}

fn mkdir_on(input: Output) -> Output {
    let op = pb::Op {
        op: Some(pb::op::Op::File(pb::FileOp {
            actions: vec![pb::FileAction {
                input: 0,
                secondary_input: -1,
                output: 0,
                action: Some(pb::file_action::Action::Mkdir(pb::FileActionMkDir {
                    path: "/x".into(),
                    mode: 0o755,
                    ..Default::default()
                })),
            }],
        })),
        ..Default::default()
    };
    Vertex::output(op, vec![input], Default::default())
}

#[test]
fn every_conformance_definition_loads() {
    let cases = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../conformance/kiln-cases");
    let mut loaded = 0;
    for entry in std::fs::read_dir(cases).unwrap().flatten() {
        let path = entry.path().join("llb.pb");
        if path.exists() {
            let graph = load(&std::fs::read(&path).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(graph.result.is_some());
            assert!(
                graph.source.is_some(),
                "{}: source map kept",
                path.display()
            );
            loaded += 1;
        }
    }
    assert_eq!(loaded, 14);
}

#[test]
fn built_graph_round_trips_with_inputs_first() {
    let base = source("docker-image://docker.io/library/busybox:latest");
    let top = mkdir_on(base.clone());
    let def = marshal(Some(&top));
    assert_eq!(def.def.len(), 3, "two ops and the terminal op");
    let graph = load(&def.encode_to_vec()).unwrap();
    assert_eq!(graph.ops.len(), 2);
    assert_eq!(graph.result.unwrap().digest, top.vertex.digest());
    // The first op written is the input.
    let first = pb::Op::decode(&def.def[0][..]).unwrap();
    assert!(matches!(first.op, Some(pb::op::Op::Source(_))));
}

fn def_of(ops: Vec<pb::Op>) -> Vec<u8> {
    pb::Definition {
        def: ops.iter().map(kiln_proto::marshal_op).collect(),
        ..Default::default()
    }
    .encode_to_vec()
}

fn terminal(digest: &str, index: i64) -> pb::Op {
    pb::Op {
        inputs: vec![pb::Input {
            digest: digest.into(),
            index,
        }],
        ..Default::default()
    }
}

#[test]
fn broken_graphs_are_refused() {
    assert!(matches!(load(b"\xff\xff\xff"), Err(LoadError::Decode(_))));
    assert!(load(&[]).unwrap().result.is_none(), "empty is scratch");

    let src = source("local://context");
    let digest = src.vertex.digest().to_string();
    let src_op = src.vertex.op().clone();

    // The terminal op names an op that is not there.
    let err = load(&def_of(vec![src_op.clone(), terminal("sha256:00", 0)])).unwrap_err();
    assert!(matches!(err, LoadError::MissingInput { .. }), "{err}");
    assert!(err.to_string().contains("sha256:00"));

    // An output index the op does not have.
    let err = load(&def_of(vec![src_op.clone(), terminal(&digest, 3)])).unwrap_err();
    assert!(
        matches!(err, LoadError::BadOutputIndex { index: 3, .. }),
        "{err}"
    );

    // Digests are taken over the bytes, so an op can only name ops that exist before it is
    // written: a dangling name is what a forged cycle looks like.
    let a = pb::Op {
        inputs: vec![pb::Input {
            digest: "sha256:b".into(),
            index: 0,
        }],
        op: src_op.op.clone(),
        ..Default::default()
    };
    let err = load(&def_of(vec![a, terminal(&digest, 0)])).unwrap_err();
    assert!(matches!(err, LoadError::MissingInput { .. }), "{err}");

    // A last op with a body is not a terminal op.
    let err = load(&def_of(vec![src_op.clone(), src_op])).unwrap_err();
    assert!(matches!(err, LoadError::BadTerminal(_)), "{err}");
}

#[test]
fn an_empty_result_is_scratch() {
    let def = def_of(vec![pb::Op::default()]);
    let graph = load(&def).unwrap();
    assert!(graph.result.is_none());
}
