//! `dockerfile.v0`: buildctl's `--opt` keys to conversion options, then the converter.

use kiln_dockerfile::convert::{
    ConvertOptions, Converted, ImageResolver, NamedContext, ResolvedImage, dockerfile_to_llb,
};
use kiln_llb::pb;
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
        session_id: Some(inputs.session.clone()),
        source_map_filename: filename.clone(),
        ..ConvertOptions::default()
    };
    for (key, value) in inputs.opts {
        if let Some(name) = key.strip_prefix("build-arg:") {
            opts.build_args.insert(name.to_string(), value.clone());
        } else if let Some(name) = key.strip_prefix("label:") {
            opts.labels.insert(name.to_string(), value.clone());
        } else if let Some(name) = key.strip_prefix("context:") {
            let context = named_context(value, inputs.locals)?;
            opts.named_contexts.insert(name.to_string(), context);
        } else if key == "build-arg:BUILDKIT_DOCKERFILE_CHECK" {
            // Replaces the file's `# check=` directive (dockerui's LinterConfig).
            let config =
                kiln_dockerfile::lint::Config::parse(value).map_err(|e| FrontendError::Option {
                    key: key.clone(),
                    value: value.clone(),
                    message: format!("failed to parse BUILDKIT_DOCKERFILE_CHECK: {e}"),
                })?;
            opts.lint = Some(config);
        } else if key == "platform" && !value.is_empty() {
            opts.target_platform = parse_platform(value).ok_or_else(|| FrontendError::Option {
                key: key.clone(),
                value: value.clone(),
                message: "expected os/arch[/variant]".into(),
            })?;
        }
    }
    // A lint request without a target checks every stage (BuildKit's AllStages).
    opts.all_stages = is_lint_request(inputs.opts) && opts.target.is_none();
    let resolver = WithLayouts {
        inner: resolver,
        locals: inputs.locals,
    };
    dockerfile_to_llb(&source, &opts, &resolver).map_err(|source| FrontendError::Convert {
        file: path.display().to_string(),
        source,
    })
}

/// The subrequest buildx sends for `--check` (`--call=check`): run the checks, build nothing.
pub const LINT_REQUEST: &str = "frontend.lint";

/// Whether the options ask for the checks only.
pub fn is_lint_request(opts: &BTreeMap<String, String>) -> bool {
    opts.get("requestid").map(String::as_str) == Some(LINT_REQUEST)
}

/// A `context:NAME` value; a `local:DIR` one brings that directory's `.dockerignore`, as
/// dockerui reads it (a directory the client did not give fails later, in the source).
fn named_context(
    value: &str,
    locals: &BTreeMap<String, PathBuf>,
) -> Result<NamedContext, FrontendError> {
    let mut context = NamedContext {
        value: value.to_string(),
        excludes: Vec::new(),
    };
    if let Some(dir) = value.strip_prefix("local:").and_then(|n| locals.get(n)) {
        let path = dir.join(".dockerignore");
        match std::fs::read_to_string(&path) {
            Ok(text) => context.excludes = kiln_dockerfile::dockerignore::read_ignore_file(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(FrontendError::Read { path, source }),
        }
    }
    Ok(context)
}

/// The engine's resolver plus the client's OCI layout stores. Where BuildKit's client serves
/// a content store by id over the session, Kiln's store id names one of the session's local
/// directories, holding an OCI image layout (the worker reads it the same way).
struct WithLayouts<'a> {
    inner: &'a dyn ImageResolver,
    locals: &'a BTreeMap<String, PathBuf>,
}

impl ImageResolver for WithLayouts<'_> {
    fn resolve(&self, reference: &str, platform: &pb::Platform) -> Result<ResolvedImage, String> {
        self.inner.resolve(reference, platform)
    }

    fn resolve_oci_layout(
        &self,
        store: &str,
        digest: &str,
        platform: &pb::Platform,
    ) -> Result<ResolvedImage, String> {
        let dir = self.locals.get(store).ok_or_else(|| {
            format!(
                "the client gave no OCI layout store {store:?} (--local {store}=DIR, or --build-context NAME=oci-layout://DIR)"
            )
        })?;
        let want = kiln_oci::Platform {
            os: platform.os.clone(),
            architecture: platform.architecture.clone(),
            variant: Some(platform.variant.clone()).filter(|v| !v.is_empty()),
            ..Default::default()
        };
        let image = kiln_oci::layout::resolve_layout_image(dir, digest, &want)
            .map_err(|e| format!("OCI layout {}: {e}", dir.display()))?;
        Ok(ResolvedImage {
            reference: format!("{store}@{digest}"),
            digest: image.manifest_digest,
            config: image.config,
        })
    }
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
