//! Solve and Status through the in-process Control channel on a raw LLB definition (no
//! containers): a local context copied into scratch, exported as a tar.

#[path = "../src/client.rs"]
#[allow(dead_code)]
mod client;

use kiln_engine::control::LocalSession;
use kiln_engine::{Engine, EngineConfig, ExportDest};
use kiln_llb::{Output, Vertex, marshal};
use kiln_proto::control::{Exporter, InfoRequest, SolveRequest, StatusRequest, Vertex as PbVertex};
use kiln_proto::pb;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn described(name: &str) -> pb::OpMetadata {
    pb::OpMetadata {
        description: BTreeMap::from([("llb.customname".to_string(), name.to_string())]),
        ..Default::default()
    }
}

/// `local://context`, then `/hello.txt` from it copied onto scratch.
fn definition() -> (pb::Definition, String) {
    let local = Vertex::output(
        pb::Op {
            constraints: Some(pb::WorkerConstraints::default()),
            op: Some(pb::op::Op::Source(pb::SourceOp {
                identifier: "local://context".into(),
                attrs: BTreeMap::from([("local.unique".to_string(), "test".to_string())]),
            })),
            ..Default::default()
        },
        vec![],
        described("[internal] load build context"),
    );
    let copy = pb::FileActionCopy {
        src: "/hello.txt".into(),
        dest: "/hello.txt".into(),
        mode: -1,
        timestamp: -1,
        create_dest_path: true,
        ..Default::default()
    };
    let out: Output = Vertex::output(
        pb::Op {
            constraints: Some(pb::WorkerConstraints::default()),
            op: Some(pb::op::Op::File(pb::FileOp {
                actions: vec![pb::FileAction {
                    input: -1,
                    secondary_input: 0,
                    output: 0,
                    action: Some(pb::file_action::Action::Copy(copy)),
                }],
            })),
            ..Default::default()
        },
        vec![local],
        described("COPY hello.txt /"),
    );
    let digest = out.vertex.digest().to_string();
    (marshal(Some(&out)), digest)
}

fn tar_file(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).ok()?);
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        if entry
            .path()
            .ok()?
            .to_string_lossy()
            .trim_start_matches("./")
            == name
        {
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).ok()?;
            return Some(data);
        }
    }
    None
}

/// Every vertex state Status reported for `r`, last state per digest wins.
async fn status_of(
    mut control: kiln_engine::control::ControlClient<tonic::transport::Channel>,
    r: String,
) -> Vec<PbVertex> {
    let mut stream = control
        .status(StatusRequest { r#ref: r })
        .await
        .expect("Status")
        .into_inner();
    let mut vertexes = Vec::new();
    while let Some(resp) = stream.message().await.expect("Status stream") {
        vertexes.extend(resp.vertexes);
    }
    vertexes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn solve_and_status_through_the_in_process_channel() {
    let root = tempfile::tempdir().unwrap();
    let ctx = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(ctx.path().join("hello.txt"), b"hello, control\n").unwrap();
    std::fs::write(ctx.path().join("other.txt"), b"not copied\n").unwrap();
    let config = EngineConfig {
        root: root.path().to_path_buf(),
        runtime: PathBuf::from("runc"),
        parallelism: 4,
    };
    let engine = Engine::open(config, || {})
        .await
        .expect("opening the engine");
    let client = client::connect(Arc::new(engine)).await.expect("connecting");
    let (def, copy_digest) = definition();

    for run in 0..2 {
        let dest = out.path().join(format!("run{run}.tar"));
        let session = client.sessions.register(LocalSession {
            locals: BTreeMap::from([("context".to_string(), ctx.path().to_path_buf())]),
            exports: vec![ExportDest::File(dest.clone())],
            ..Default::default()
        });
        let r = format!("controltest{run}");
        let req = SolveRequest {
            r#ref: r.clone(),
            definition: Some(def.clone()),
            session: session.id().to_string(),
            exporters: vec![Exporter {
                r#type: "tar".into(),
                attrs: BTreeMap::new(),
            }],
            ..Default::default()
        };
        // First run: Status before Solve; second run: Status after Solve has finished.
        let early = (run == 0).then(|| tokio::spawn(status_of(client.control.clone(), r.clone())));
        let mut control = client.control.clone();
        control.solve(req).await.expect("Solve");
        let vertexes = match early {
            Some(task) => task.await.unwrap(),
            None => status_of(client.control.clone(), r).await,
        };

        assert_eq!(
            tar_file(&dest, "hello.txt").as_deref(),
            Some(&b"hello, control\n"[..])
        );
        assert_eq!(tar_file(&dest, "other.txt"), None);
        let copy = vertexes
            .iter()
            .rfind(|v| v.digest == copy_digest)
            .unwrap_or_else(|| panic!("run {run}: no status for the copy vertex in {vertexes:?}"));
        assert_eq!(copy.name, "COPY hello.txt /");
        assert!(copy.completed.is_some(), "run {run}: {copy:?}");
        assert!(copy.error.is_empty(), "run {run}: {copy:?}");
        assert_eq!(copy.cached, run == 1, "run {run}: {copy:?}");
    }

    // A session the engine does not know is refused before anything runs.
    let req = SolveRequest {
        r#ref: "controltest-unknown".into(),
        definition: Some(def),
        session: "no-such-session".into(),
        ..Default::default()
    };
    let err = client.control.clone().solve(req).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);
    // Its Status stream ends rather than waiting for a build that never runs.
    let watch = status_of(client.control.clone(), "controltest-unknown".into());
    let vertexes = tokio::time::timeout(std::time::Duration::from_secs(30), watch)
        .await
        .expect("Status of a refused build ends");
    assert!(vertexes.is_empty());
    assert!(
        err.message()
            .contains("session \"no-such-session\" is not known"),
        "{}",
        err.message()
    );

    let err = client
        .control
        .clone()
        .info(InfoRequest {})
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
}
