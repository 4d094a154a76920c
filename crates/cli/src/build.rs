//! `kiln build`: flags to a solve request, the engine in-process, progress on stderr.

use crate::flags;
use crate::progress::{Display, Mode};
use anyhow::{Context, Result, bail};
use clap::Args;
use kiln_engine::{Engine, EngineConfig, SolveRequest};
use std::collections::BTreeMap;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tokio_util::sync::CancellationToken;

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
    /// Run every step, ignoring the cache.
    #[arg(long)]
    pub no_cache: bool,
    /// auto, tty, plain or quiet.
    #[arg(long, default_value = "auto")]
    pub progress: String,
    /// How many steps may run at once.
    #[arg(long, env = "KILN_PARALLELISM")]
    pub parallelism: Option<usize>,
    /// Write the exporter's response (image digest, …) as JSON to this file.
    #[arg(long)]
    pub metadata_file: Option<PathBuf>,
    /// The OCI runtime binary.
    #[arg(long, env = "KILN_RUNTIME", default_value = "runc")]
    pub runtime: PathBuf,
}

/// The request both spellings resolve to.
pub fn request(args: &BuildArgs) -> Result<SolveRequest> {
    let mut req = SolveRequest {
        no_cache: args.no_cache,
        parallelism: args.parallelism,
        ..Default::default()
    };
    for l in &args.local {
        let (name, dir) = flags::key_value(l, "--local")?;
        req.locals.insert(name, absolute(Path::new(&dir))?);
    }
    for o in &args.opt {
        let (k, v) = flags::key_value(o, "--opt")?;
        req.frontend_opts.insert(k, v);
    }
    if let Some(context) = &args.context {
        if args.frontend.as_deref().is_some_and(|f| f != "dockerfile.v0") {
            bail!("a CONTEXT argument builds a Dockerfile; it cannot be combined with --frontend {:?}", args.frontend);
        }
        req.frontend = Some("dockerfile.v0".into());
        let context = absolute(context)?;
        let file = match &args.file {
            Some(f) => absolute(f)?,
            None => context.join("Dockerfile"),
        };
        let dir = file.parent().map(Path::to_path_buf).unwrap_or_else(|| context.clone());
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "Dockerfile".into());
        req.locals.insert("context".into(), context);
        req.locals.insert("dockerfile".into(), dir);
        req.frontend_opts.insert("filename".into(), name);
    } else if let Some(f) = &args.frontend {
        req.frontend = Some(f.clone());
    }
    if let Some(t) = &args.target {
        req.frontend_opts.insert("target".into(), t.clone());
    }
    for a in &args.build_args {
        let (k, v) = flags::key_value(a, "--build-arg")?;
        req.frontend_opts.insert(format!("build-arg:{k}"), v);
    }
    for a in &args.labels {
        let (k, v) = flags::key_value(a, "--label")?;
        req.frontend_opts.insert(format!("label:{k}"), v);
    }
    for o in &args.outputs {
        req.exports.push(flags::output(o)?);
    }
    Ok(req)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("resolving {}", p.display()))
}

pub fn run(args: BuildArgs, root: PathBuf) -> Result<ExitCode> {
    let mut req = request(&args)?;
    if req.frontend.is_none() {
        let mut stdin = std::io::stdin();
        if stdin.is_terminal() {
            bail!("no build given: pass a CONTEXT directory, --frontend dockerfile.v0, or an LLB definition on stdin");
        }
        let mut def = Vec::new();
        stdin
            .read_to_end(&mut def)
            .context("reading the LLB definition from stdin")?;
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
        let engine = Engine::open(config, move || {
            eprintln!("waiting for another kiln process using {shown}")
        })
        .await
        .with_context(|| format!("opening the store at {}", root.display()))?;
        let (progress, events) = kiln_engine::Progress::channel();
        let display = tokio::spawn(Display::new(mode).run(events));
        let cancel = CancellationToken::new();
        let signals = tokio::spawn(cancel_on_signal(cancel.clone()));
        let result = engine.solve(req, progress, cancel.clone()).await;
        signals.abort();
        let _ = display.await;
        let response = match result {
            Ok(r) => r,
            Err(kiln_engine::EngineError::Cancelled) => {
                eprintln!("error: build cancelled");
                return Ok(ExitCode::from(130));
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(path) = &args.metadata_file {
            let json: BTreeMap<_, serde_json::Value> = response
                .exporter_response
                .iter()
                .map(|(k, v)| {
                    let value = if k == "containerimage.descriptor" {
                        serde_json::from_str(v).unwrap_or(serde_json::Value::String(v.clone()))
                    } else {
                        serde_json::Value::String(v.clone())
                    };
                    (k.clone(), value)
                })
                .collect();
            std::fs::write(path, serde_json::to_vec_pretty(&json)?)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

/// Ctrl-C or SIGTERM cancels the build: its containers are killed and nothing is recorded.
async fn cancel_on_signal(cancel: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
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
    for dir in std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")]) {
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
