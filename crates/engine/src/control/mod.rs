//! BuildKit's Control API (control.proto) served by the engine: a tonic adapter beside the
//! engine core, which keeps its own request types. Solve and Status are served; the other RPCs
//! answer `unimplemented`. Daemonless `kiln build` talks to it over an in-memory stream, and
//! kilnd will serve the same service on a socket.

mod map;
mod session;
mod status;

pub use map::{RequestError, check_ref, solve_request};
pub use session::{LocalSession, SessionGuard, SessionRegistry};

use crate::{Engine, EngineError, Progress};
use futures::Stream;
use kiln_proto::control::{self as pb, control_server::Control};
use status::{Builds, BuildsError, StatusStream};
use std::pin::Pin;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status};

pub use kiln_proto::control::control_client::ControlClient;
pub use kiln_proto::control::control_server::ControlServer;

/// Largest gRPC message either side accepts (BuildKit's default is 16 MiB; large LLB
/// definitions and exporter responses need the room).
pub const MAX_MESSAGE_SIZE: usize = 64 << 20;

type Unserved<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The Control service over one engine.
pub struct ControlService {
    engine: Arc<Engine>,
    sessions: SessionRegistry,
    builds: Arc<Builds>,
}

impl ControlService {
    /// `sessions` is where in-process clients register their local dirs and export targets.
    pub fn new(engine: Arc<Engine>, sessions: SessionRegistry) -> ControlService {
        ControlService {
            engine,
            sessions,
            builds: Arc::default(),
        }
    }

    /// The tonic server for this service, with BuildKit-sized message limits.
    pub fn into_server(self) -> ControlServer<ControlService> {
        ControlServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE)
    }
}

/// Ends a build's progress when dropped.
struct Finish {
    builds: Arc<Builds>,
    r: String,
    log: Arc<status::BuildLog>,
}

impl Drop for Finish {
    fn drop(&mut self) {
        self.builds.finish(&self.r, &self.log);
    }
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!(
        "Control.{rpc} is not implemented by kiln yet (Solve and Status are)"
    ))
}

/// An engine error as a gRPC status; the message is the error's text (with its Dockerfile
/// location), which clients print as is.
fn engine_status(e: EngineError) -> Status {
    let code = match &e {
        EngineError::Cancelled => Code::Cancelled,
        EngineError::UnknownFrontend(_) | EngineError::Load(_) => Code::InvalidArgument,
        _ => Code::Unknown,
    };
    Status::new(code, e.to_string())
}

fn request_status(e: RequestError) -> Status {
    match e {
        RequestError::Unsupported(_) => Status::unimplemented(e.to_string()),
        RequestError::UnknownSession(_) => Status::failed_precondition(e.to_string()),
        _ => Status::invalid_argument(e.to_string()),
    }
}

fn builds_status(e: BuildsError) -> Status {
    match e {
        BuildsError::AlreadyStarted(_) => Status::already_exists(e.to_string()),
        BuildsError::TooMany => Status::resource_exhausted(e.to_string()),
    }
}

#[tonic::async_trait]
impl Control for ControlService {
    async fn solve(
        &self,
        request: Request<pb::SolveRequest>,
    ) -> Result<Response<pb::SolveResponse>, Status> {
        let req = request.into_inner();
        check_ref(&req.r#ref).map_err(request_status)?;
        let log = self.builds.start(&req.r#ref).map_err(builds_status)?;
        // From here on the build's Status streams end however Solve ends, panics included.
        let finish = Finish {
            builds: self.builds.clone(),
            r: req.r#ref.clone(),
            log,
        };
        let engine_req = solve_request(&req, &self.sessions).map_err(request_status)?;
        let cancel = CancellationToken::new();
        // The client dropping the call drops this future: the guard then cancels the build,
        // which goes on in its own task until its containers are gone.
        let guard = cancel.clone().drop_guard();
        let engine = self.engine.clone();
        let task = tokio::spawn(async move {
            let (progress, mut events) = Progress::channel();
            let solve = engine.solve(engine_req, progress, cancel);
            tokio::pin!(solve);
            let result = loop {
                tokio::select! {
                    Some(ev) = events.recv() => finish.log.push(&ev),
                    result = &mut solve => break result,
                }
            };
            while let Ok(ev) = events.try_recv() {
                finish.log.push(&ev);
            }
            drop(finish);
            result
        });
        let result = task
            .await
            .map_err(|e| Status::internal(format!("the build task failed: {e}")))?;
        guard.disarm();
        let response = result.map_err(engine_status)?;
        Ok(Response::new(pb::SolveResponse {
            exporter_response: response.exporter_response.into_iter().collect(),
        }))
    }

    type StatusStream = StatusStream;

    async fn status(
        &self,
        request: Request<pb::StatusRequest>,
    ) -> Result<Response<StatusStream>, Status> {
        let r = request.into_inner().r#ref;
        check_ref(&r).map_err(request_status)?;
        let stream = self.builds.watch(&r).map_err(builds_status)?;
        Ok(Response::new(stream))
    }

    async fn disk_usage(
        &self,
        _: Request<pb::DiskUsageRequest>,
    ) -> Result<Response<pb::DiskUsageResponse>, Status> {
        Err(unimplemented("DiskUsage"))
    }

    type PruneStream = Unserved<pb::UsageRecord>;

    async fn prune(
        &self,
        _: Request<pb::PruneRequest>,
    ) -> Result<Response<Self::PruneStream>, Status> {
        Err(unimplemented("Prune"))
    }

    type SessionStream = Unserved<pb::BytesMessage>;

    async fn session(
        &self,
        _: Request<tonic::Streaming<pb::BytesMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        Err(unimplemented("Session"))
    }

    async fn list_workers(
        &self,
        _: Request<pb::ListWorkersRequest>,
    ) -> Result<Response<pb::ListWorkersResponse>, Status> {
        Err(unimplemented("ListWorkers"))
    }

    async fn info(
        &self,
        _: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        Err(unimplemented("Info"))
    }

    type ListenBuildHistoryStream = Unserved<pb::BuildHistoryEvent>;

    async fn listen_build_history(
        &self,
        _: Request<pb::BuildHistoryRequest>,
    ) -> Result<Response<Self::ListenBuildHistoryStream>, Status> {
        Err(unimplemented("ListenBuildHistory"))
    }

    async fn update_build_history(
        &self,
        _: Request<pb::UpdateBuildHistoryRequest>,
    ) -> Result<Response<pb::UpdateBuildHistoryResponse>, Status> {
        Err(unimplemented("UpdateBuildHistory"))
    }
}
