//! `dockerfile.v0`: buildctl's `--opt` keys to conversion options, then the converter.

use kiln_dockerfile::convert::{ConvertOptions, Converted, ImageResolver, dockerfile_to_llb};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum FrontendError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {source}")]
    Convert {
        file: String,
        #[source]
        source: kiln_dockerfile::convert::ConvertError,
    },
    #[error("frontend option {key}={value:?}: {message}")]
    Option {
        key: String,
        value: String,
        message: String,
    },
    #[error("dockerfile.v0 needs a local directory named {0:?} (--local {0}=DIR)")]
    MissingLocal(String),
}

/// What the Dockerfile frontend reads from the client.
pub struct DockerfileInputs<'a> {
    /// `--opt` values (filename, target, build-arg:K, label:K, platform).
    pub opts: &'a BTreeMap<String, String>,
    /// `--local` directories: `context` and `dockerfile`.
    pub locals: &'a BTreeMap<String, PathBuf>,
    /// Value for `local.unique`: names the build's session, as a client's session does.
    pub session: String,
}

/// Reads the Dockerfile and ignore file, converts them, and returns LLB plus the image config.
pub fn build_dockerfile(
    inputs: &DockerfileInputs<'_>,
    resolver: &dyn ImageResolver,
) -> Result<Converted, FrontendError> {
    let filename = inputs
        .opts
        .get("filename")
        .cloned()
        .unwrap_or_else(|| "Dockerfile".to_string());
    let dockerfile_dir = inputs
        .locals
        .get("dockerfile")
        .or_else(|| inputs.locals.get("context"))
        .ok_or_else(|| FrontendError::MissingLocal("dockerfile".into()))?;
    let context_dir = inputs
        .locals
        .get("context")
        .ok_or_else(|| FrontendError::MissingLocal("context".into()))?;
    let path = dockerfile_dir.join(&filename);
    let source = std::fs::read(&path).map_err(|source| FrontendError::Read {
        path: path.clone(),
        source,
    })?;
    let ignore_patterns = read_ignore(&path, context_dir)?;

    let mut opts = ConvertOptions {
        target: inputs.opts.get("target").filter(|t| !t.is_empty()).cloned(),
        ignore_patterns,
        local_unique: Some(inputs.session.clone()),
        source_map_filename: filename.clone(),
        ..ConvertOptions::default()
    };
    for (key, value) in inputs.opts {
        if let Some(name) = key.strip_prefix("build-arg:") {
            opts.build_args.insert(name.to_string(), value.clone());
        } else if let Some(name) = key.strip_prefix("label:") {
            opts.labels.insert(name.to_string(), value.clone());
        } else if key == "platform" && !value.is_empty() {
            opts.target_platform = parse_platform(value).ok_or_else(|| FrontendError::Option {
                key: key.clone(),
                value: value.clone(),
                message: "expected os/arch[/variant]".into(),
            })?;
        }
    }
    dockerfile_to_llb(&source, &opts, resolver).map_err(|source| FrontendError::Convert {
        file: path.display().to_string(),
        source,
    })
}

/// `<Dockerfile>.dockerignore` beside the Dockerfile wins over the context's `.dockerignore`.
fn read_ignore(dockerfile: &Path, context: &Path) -> Result<Vec<String>, FrontendError> {
    let mut specific = dockerfile.as_os_str().to_owned();
    specific.push(".dockerignore");
    for path in [PathBuf::from(specific), context.join(".dockerignore")] {
        match std::fs::read_to_string(&path) {
            Ok(text) => return Ok(kiln_dockerfile::dockerignore::read_ignore_file(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => return Err(FrontendError::Read { path, source }),
        }
    }
    Ok(Vec::new())
}

fn parse_platform(s: &str) -> Option<kiln_llb::pb::Platform> {
    let mut parts = s.split('/');
    let os = parts.next()?.to_string();
    let architecture = parts.next()?.to_string();
    let variant = parts.next().unwrap_or_default().to_string();
    if parts.next().is_some() || os.is_empty() || architecture.is_empty() {
        return None;
    }
    Some(kiln_llb::pb::Platform {
        os,
        architecture,
        variant,
        ..Default::default()
    })
}
