//! `kiln debug`: look inside what a build would do.

use anyhow::{Context, Result};
use clap::Subcommand;
use std::io::{Read, Write};
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum DebugCommand {
    /// Convert a Dockerfile on stdin to an LLB definition on stdout (as BuildKit's
    /// examples/dockerfile2llb does). Base images are resolved from their registries.
    Dockerfile2llb {
        #[arg(long)]
        target: Option<String>,
    },
    /// Print an LLB definition from stdin as one JSON object per op.
    DumpLlb,
}

pub fn run(cmd: DebugCommand) -> Result<ExitCode> {
    match cmd {
        DebugCommand::Dockerfile2llb { target } => {
            let mut dockerfile = Vec::new();
            std::io::stdin()
                .read_to_end(&mut dockerfile)
                .context("reading the Dockerfile from stdin")?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let resolver = kiln_engine::resolver::RegistryResolver::standalone(rt.handle().clone())
                .map_err(anyhow::Error::msg)?;
            // BuildKit's examples/dockerfile2llb passes no source map: neither do we here.
            let opts = kiln_dockerfile::convert::ConvertOptions {
                target,
                source_map_filename: String::new(),
                ..Default::default()
            };
            // The converter blocks on the resolver, so it runs off the runtime's threads.
            let converted = std::thread::scope(|s| {
                s.spawn(|| {
                    kiln_dockerfile::convert::dockerfile_to_llb(&dockerfile, &opts, &resolver)
                })
                .join()
            })
            .map_err(|_| anyhow::anyhow!("the converter panicked"))?
            .context("<stdin>")?;
            let bytes = kiln_proto::Message::encode_to_vec(&converted.definition);
            std::io::stdout().write_all(&bytes)?;
            Ok(ExitCode::SUCCESS)
        }
        DebugCommand::DumpLlb => {
            let mut input = Vec::new();
            std::io::stdin()
                .read_to_end(&mut input)
                .context("reading stdin")?;
            let graph = kiln_llb::load(&input)?;
            let mut out = std::io::stdout().lock();
            for op in graph.ops.values() {
                writeln!(out, "{} {:?}", op.digest, op.op)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
