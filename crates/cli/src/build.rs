//! `kiln build`: flags to a Control API solve request, sent to the engine in-process over an
//! in-memory gRPC channel (kilnd will be the same call on a socket); progress on stderr.

mod contexts;

use crate::client;
use crate::flags;
use crate::progress::{Display, Mode};
use anyhow::{Context, Result, bail};
use clap::Args;
use kiln_engine::control::{ControlClient, LocalSession};
use kiln_engine::{Engine, EngineConfig, ExportKind};
use kiln_proto::control;
use kiln_proto::pb;
use kiln_proto::prost::Message;
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::transport::Channel;

#[derive(Args)]
pub struct BuildArgs {
    /// The build context directory (buildx spelling). Without it and without --frontend, an
    /// LLB definition is read from stdin, as `buildctl build` does.
    pub context: Option<PathBuf>,
    /// The Dockerfile (default: CONTEXT/Dockerfile).
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// The stage to build.
    #[arg(long)]
    pub target: Option<String>,
    /// A build argument, KEY=VALUE.
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// An image label, KEY=VALUE.
    #[arg(long = "label")]
    pub labels: Vec<String>,
    /// Where the result goes: type=oci,dest=FILE | type=tar,dest=FILE | type=local,dest=DIR.
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<String>,
    /// The frontend (buildctl spelling): dockerfile.v0.
    #[arg(long)]
    pub frontend: Option<String>,
    /// A local directory, NAME=DIR (buildctl spelling: context=…, dockerfile=…).
    #[arg(long)]
    pub local: Vec<String>,
    /// A frontend option, KEY=VALUE (target=…, build-arg:K=V, filename=…).
    #[arg(long)]
    pub opt: Vec<String>,
    /// A named context, NAME=DIR|docker-image://REF|oci-layout://PATH[:TAG|@DIGEST]
    /// (buildx spelling of `--opt context:NAME=…`).
    #[arg(long = "build-context")]
    pub build_contexts: Vec<String>,
    /// A secret for RUN --mount=type=secret: id=ID[,src=FILE|,env=VAR] (buildctl spelling).
    #[arg(long)]
    pub secret: Vec<String>,
    /// Grant an entitlement to the build: network.host or security.insecure.
    #[arg(long)]
    pub allow: Vec<String>,
    /// Forward an SSH agent (RUN --mount=type=ssh): not supported yet.
    #[arg(long)]
    pub ssh: Vec<String>,
    /// Run every step, ignoring the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Only run the build checks and print them (buildx `--check`); fails if any fired.
    #[arg(long)]
    pub check: bool,
    /// auto, tty, plain or quiet.
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// How many steps may run at once.
    #[arg(long, env = "KILN_PARALLELISM")]
    pub parallelism: Option<usize>,
    /// An image name to push to (buildx spelling); with --push, or an -o type=image output
    /// without a name. Alone it only builds: Kiln has no local image store to tag into.
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// Push the result to the --tag names (buildx's shorthand for -o type=registry).
    #[arg(long)]
    pub push: bool,
    /// Kiln's configuration (`[registry."host"]` tables); default /etc/kiln/kiln.toml as
    /// root, else $XDG_CONFIG_HOME/kiln/kiln.toml.
    #[arg(long = "config", env = "KILN_CONFIG")]
    pub config: Option<PathBuf>,
    /// Write the exporter's response (image digest, …) as JSON to this file.
    #[arg(long)]
    pub metadata_file: Option<PathBuf>,
    /// The OCI runtime binary.
    #[arg(long, env = "KILN_RUNTIME", default_value = "runc")]
    pub runtime: PathBuf,
}

/// A build request as the Control API carries it, and the session that serves its local
/// directories and export destinations.
pub struct Planned {
    pub request: control::SolveRequest,
    pub session: LocalSession,
}

/// The request both spellings resolve to.
pub fn request(args: &BuildArgs) -> Result<Planned> {
    let mut req = control::SolveRequest::default();
    let mut session = LocalSession::default();
    if args.no_cache {
        // buildctl's spelling: an empty list of stages means every step.
        req.frontend_attrs.insert("no-cache".into(), String::new());
    }
    for l in &args.local {
        let (name, dir) = flags::key_value(l, "--local")?;
        session.locals.insert(name, absolute(Path::new(&dir))?);
    }
    for o in &args.opt {
        let (k, v) = flags::key_value(o, "--opt")?;
        req.frontend_attrs.insert(k, v);
    }
    for s in &args.secret {
        flags::secret(s, &mut session.secrets)?;
    }
    req.entitlements = args.allow.clone();
    if let Some(s) = args.ssh.first() {
        bail!("--ssh {s:?}: SSH agent forwarding is not supported yet");
    }
    if let Some(context) = &args.context {
        if args
            .frontend
            .as_deref()
            .is_some_and(|f| f != "dockerfile.v0")
        {
            bail!(
                "a CONTEXT argument builds a Dockerfile; it cannot be combined with --frontend {:?}",
                args.frontend
            );
        }
        req.frontend = "dockerfile.v0".into();
        let context = absolute(context)?;
        let file = match &args.file {
            Some(f) => absolute(f)?,
            None => context.join("Dockerfile"),
        };
        let dir = file
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| context.clone());
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".into());
        session.locals.insert("context".into(), context);
        session.locals.insert("dockerfile".into(), dir);
        req.frontend_attrs.insert("filename".into(), name);
    } else if let Some(f) = &args.frontend {
        req.frontend = f.clone();
    }
    if let Some(t) = &args.target {
        req.frontend_attrs.insert("target".into(), t.clone());
    }
    if args.check {
        // What buildx sends for --check (--call=check): the frontend's lint subrequest.
        req.frontend_attrs
            .insert("requestid".into(), "frontend.lint".into());
    }
    for a in &args.build_args {
        let (k, v) = flags::key_value(a, "--build-arg")?;
        req.frontend_attrs.insert(format!("build-arg:{k}"), v);
    }
    for c in &args.build_contexts {
        contexts::add(c, &mut req.frontend_attrs, &mut session)?;
    }
    for a in &args.labels {
        let (k, v) = flags::key_value(a, "--label")?;
        req.frontend_attrs.insert(format!("label:{k}"), v);
    }
    let mut outputs = Vec::new();
    for o in &args.outputs {
        outputs.push(flags::output(o)?);
    }
    flags::apply_tags(&mut outputs, &args.tags, args.push)?;
    for export in outputs {
        let kind = match export.kind {
            ExportKind::Oci => "oci",
            ExportKind::Tar => "tar",
            ExportKind::Local => "local",
            ExportKind::Image => "image",
        };
        // The destination stays on the client's side, as BuildKit's session keeps it.
        req.exporters.push(control::Exporter {
            r#type: kind.into(),
            attrs: export.attrs,
        });
        session.exports.push(export.dest);
    }
    Ok(Planned {
        request: req,
        session,
    })
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

pub fn run(args: BuildArgs, root: PathBuf) -> Result<ExitCode> {
    let Planned {
        request: mut req,
        session,
    } = request(&args)?;
    if req.frontend.is_empty() {
        let mut stdin = std::io::stdin();
        if stdin.is_terminal() {
            bail!(
                "no build given: pass a CONTEXT directory, --frontend dockerfile.v0, or an LLB definition on stdin"
            );
        }
        let mut def = Vec::new();
        stdin
            .read_to_end(&mut def)
            .context("reading the LLB definition from stdin")?;
        let def = pb::Definition::decode(def.as_slice())
            .context("reading the LLB definition from stdin: not a serialized pb.Definition")?;
        req.definition = Some(def);
    }
    let mode = Mode::parse(&args.progress)?;
    let runtime = which(&args.runtime)?;
    let parallelism = args.parallelism.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
            .max(4)
    });
    if !args.tags.is_empty() && !args.push && args.outputs.is_empty() {
        eprintln!(
            "WARNING: no output specified: the result stays in the build cache (Kiln has no \
             local image store to tag {}; use --push or -o)",
            args.tags.join(", ")
        );
    }
    let registry = registry_client(args.config.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let config = EngineConfig {
            root: root.clone(),
            runtime,
            parallelism,
        };
        let shown = root.display().to_string();
        let engine = Engine::open_with_registry(config, registry, move || {
            eprintln!("waiting for another kiln process using {shown}")
        })
        .await
        .with_context(|| format!("opening the store at {}", root.display()))?;
        let client = client::connect(Arc::new(engine)).await?;
        let guard = client.sessions.register(session);
        req.session = guard.id().to_string();
        req.r#ref = format!("{:025x}", rand::random::<u128>() >> 28);
        let cancel = CancellationToken::new();
        let signals = tokio::spawn(cancel_on_signal(cancel.clone()));
        let result = solve(client.control, req, Display::new(mode), cancel).await;
        signals.abort();
        let response = match result {
            Ok(r) => r,
            Err(status) if status.code() == Code::Cancelled => {
                eprintln!("error: build cancelled");
                return Ok(ExitCode::from(130));
            }
            Err(status) => bail!("{}", status.message()),
        };
        if let Some(path) = &args.metadata_file {
            let json = metadata_json(&response.exporter_response);
            std::fs::write(path, serde_json::to_vec_pretty(&json)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// The registry client with Kiln's configuration: `--config FILE` (which must exist), else
/// the default file if there is one.
fn registry_client(config: Option<&Path>) -> Result<kiln_registry::Client> {
    let cfg = match config {
        Some(p) => kiln_registry::Config::load(p)?,
        None => kiln_registry::Config::load_default()?,
    };
    Ok(kiln_registry::Client::new()?.with_config(cfg))
}

/// buildctl's metadata file: a value that is base64 of a JSON object is written as that
/// object (containerimage.descriptor), anything else as a string.
pub fn metadata_json(response: &BTreeMap<String, String>) -> BTreeMap<String, serde_json::Value> {
    use base64::Engine as _;
    response
        .iter()
        .map(|(k, v)| {
            let object = base64::engine::general_purpose::STANDARD
                .decode(v)
                .ok()
                .and_then(|raw| {
                    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&raw).ok()
                })
                .filter(|m| !m.is_empty());
            let value = match object {
                Some(m) => serde_json::Value::Object(m),
                None => serde_json::Value::String(v.clone()),
            };
            (k.clone(), value)
        })
        .collect()
}

/// Runs Solve with Status beside it, as buildctl does. Cancelling drops the Solve call (the
/// server then cancels the build) and waits for Status to end, which happens once the
/// engine has stopped the build's containers.
pub async fn solve(
    control: ControlClient<Channel>,
    req: control::SolveRequest,
    display: Display,
    cancel: CancellationToken,
) -> Result<control::SolveResponse, tonic::Status> {
    let status_req = control::StatusRequest {
        r#ref: req.r#ref.clone(),
    };
    let mut status_client = control.clone();
    let display = tokio::spawn(async move {
        if let Ok(stream) = status_client.status(status_req).await {
            display.run(stream.into_inner()).await;
        }
    });
    let mut solve_client = control;
    let result = tokio::select! {
        r = solve_client.solve(req) => r.map(tonic::Response::into_inner),
        _ = cancel.cancelled() => Err(tonic::Status::cancelled("build cancelled")),
    };
    let _ = display.await;
    result
}

/// Ctrl-C or SIGTERM cancels the build: its containers are killed and nothing is recorded.
async fn cancel_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        return;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
    cancel.cancel();
}

/// Finds the runtime on PATH unless a path was given.
fn which(bin: &Path) -> Result<PathBuf> {
    if bin.components().count() > 1 {
        return Ok(bin.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in
        std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
    {
        let candidate = dir.join(bin);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "OCI runtime {:?} not found on PATH (install Debian's runc, or set KILN_RUNTIME)",
        bin
    )
}
