//! The daemonless client: the engine's Control service on one end of an in-memory stream and
//! a tonic channel on the other, so `kiln build` speaks the same API a daemon would serve.

use anyhow::{Context, Result};
use hyper_util::rt::TokioIo;
use kiln_engine::Engine;
use kiln_engine::control::{ControlClient, ControlService, MAX_MESSAGE_SIZE, SessionRegistry};
use std::sync::{Arc, Mutex};
use tonic::transport::{Channel, Endpoint, Server, Uri};

/// Bytes buffered in each direction of the in-memory stream.
const DUPLEX_BUFFER: usize = 1 << 20;
/// HTTP/2 flow-control windows: large, so a big definition or log burst is not throttled.
const WINDOW: u32 = 8 << 20;

pub struct InProcess {
    pub control: ControlClient<Channel>,
    /// Where this client registers its local dirs and export destinations (its "session").
    pub sessions: SessionRegistry,
}

/// Serves `engine` on an in-memory stream and connects to it.
pub async fn connect(engine: Arc<Engine>) -> Result<InProcess> {
    let sessions = SessionRegistry::new();
    let service = ControlService::new(engine, sessions.clone()).into_server();
    let (client_io, server_io) = tokio::io::duplex(DUPLEX_BUFFER);
    let server = Server::builder()
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW);
    // One connection; it keeps being served after the one-item stream ends. (Served without
    // tonic's router, which would pull in axum.)
    let incoming = tokio_stream::once(Ok::<_, std::io::Error>(server_io));
    tokio::spawn(server.serve_with_incoming(service, incoming));

    let slot = Arc::new(Mutex::new(Some(client_io)));
    let connector = tower::service_fn(move |_: Uri| {
        let io = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        async move {
            io.map(TokioIo::new).ok_or_else(|| {
                std::io::Error::other("the in-process engine accepts one connection")
            })
        }
    });
    let channel = Endpoint::from_static("http://kiln.in-process")
        .initial_stream_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .connect_with_connector(connector)
        .await
        .context("connecting to the in-process engine")?;
    let control = ControlClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    Ok(InProcess { control, sessions })
}
