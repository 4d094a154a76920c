//! kiln: the Kiln client. `kiln build` runs the engine in-process (daemonless) by default.

mod build;
mod client;
mod debug;
mod flags;
mod progress;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "A concurrent, cache-efficient container image builder"
)]
struct Cli {
    /// The store's root directory.
    #[arg(long, env = "KILN_ROOT", global = true)]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build an image from a Dockerfile, or from an LLB definition on stdin.
    Build(Box<build::BuildArgs>),
    /// Tools for looking inside builds.
    #[command(subcommand)]
    Debug(debug::DebugCommand),
}

fn default_root() -> PathBuf {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return PathBuf::from("/var/lib/kiln");
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("kiln");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".local/share/kiln")
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let root = cli.root.clone().unwrap_or_else(default_root);
    // runc and the bundles are given paths under the root: a relative root would be resolved
    // against the wrong directory there.
    let root = std::path::absolute(&root).unwrap_or(root);
    let result = match cli.command {
        Command::Build(args) => build::run(*args, root),
        Command::Debug(cmd) => debug::run(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            std::process::ExitCode::from(1)
        }
    }
}

/// The error and its causes, each once.
fn chain(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if parts.last().is_some_and(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}
