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
    opts.run_defaults = run_defaults(inputs.opts)?;
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

/// The options dockerui applies to every RUN: `add-hosts`, `hostname` (or the
/// `BUILDKIT_SANDBOX_HOSTNAME` build arg), `force-network-mode`, `shm-size`, `ulimit`,
/// `cgroup-parent`.
fn run_defaults(
    opts: &BTreeMap<String, String>,
) -> Result<kiln_dockerfile::convert::RunDefaults, FrontendError> {
    let bad = |key: &str, message: String| FrontendError::Option {
        key: key.to_string(),
        value: opts.get(key).cloned().unwrap_or_default(),
        message,
    };
    let mut d = kiln_dockerfile::convert::RunDefaults::default();
    for field in csv(opts.get("add-hosts").map_or("", String::as_str)) {
        let lower = field.to_lowercase();
        let (host, ip) = lower
            .split_once('=')
            .ok_or_else(|| bad("add-hosts", format!("invalid key-value pair {field}")))?;
        let ip: std::net::IpAddr = ip
            .parse()
            .map_err(|_| bad("add-hosts", format!("failed to parse IP {ip}")))?;
        d.extra_hosts.push((host.to_string(), ip.to_string()));
    }
    d.hostname = opts
        .get("build-arg:BUILDKIT_SANDBOX_HOSTNAME")
        .filter(|v| !v.is_empty())
        .or_else(|| opts.get("hostname"))
        .cloned()
        .unwrap_or_default();
    d.network = match opts.get("force-network-mode").map_or("", String::as_str) {
        "" | "sandbox" => pb::NetMode::Unset as i32,
        "none" => pb::NetMode::None as i32,
        "host" => pb::NetMode::Host as i32,
        other => {
            return Err(bad(
                "force-network-mode",
                format!("invalid netmode {other}"),
            ));
        }
    };
    if let Some(v) = opts.get("shm-size").filter(|v| !v.is_empty()) {
        d.shm_size = v
            .parse()
            .map_err(|_| bad("shm-size", format!("invalid shm size {v}")))?;
    }
    for field in csv(opts.get("ulimit").map_or("", String::as_str)) {
        d.ulimits
            .push(parse_ulimit(&field).map_err(|m| bad("ulimit", m))?);
    }
    d.cgroup_parent = opts.get("cgroup-parent").cloned().unwrap_or_default();
    Ok(d)
}

/// Comma-separated fields, empty ones dropped.
fn csv(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect()
}

/// go-units `ParseUlimit`: `name=soft[:hard]`.
fn parse_ulimit(v: &str) -> Result<(String, i64, i64), String> {
    const NAMES: [&str; 15] = [
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
    ];
    let (name, limits) = v
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {v}"))?;
    if !NAMES.contains(&name) {
        return Err(format!("invalid ulimit type: {name}"));
    }
    let number = |s: &str| {
        s.parse::<i64>()
            .map_err(|_| format!("invalid ulimit argument: {v}"))
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (number(s)?, number(h)?),
        None => {
            let n = number(limits)?;
            (n, n)
        }
    };
    if soft > hard {
        return Err(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        ));
    }
    Ok((name.to_string(), soft, hard))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn run_defaults_as_dockerui_reads_them() {
        let d = run_defaults(&opts(&[
            ("add-hosts", "db=10.0.0.5,Web=::1"),
            ("hostname", "box"),
            ("build-arg:BUILDKIT_SANDBOX_HOSTNAME", "argbox"),
            ("force-network-mode", "none"),
            ("shm-size", "1048576"),
            ("ulimit", "nofile=1024:2048,nproc=10"),
        ]))
        .unwrap();
        assert_eq!(
            d.extra_hosts,
            [
                ("db".to_string(), "10.0.0.5".to_string()),
                ("web".to_string(), "::1".to_string())
            ]
        );
        assert_eq!(d.hostname, "argbox");
        assert_eq!(d.network, pb::NetMode::None as i32);
        assert_eq!(d.shm_size, 1 << 20);
        assert_eq!(
            d.ulimits,
            [
                ("nofile".to_string(), 1024, 2048),
                ("nproc".to_string(), 10, 10)
            ]
        );
        assert_eq!(run_defaults(&opts(&[])).unwrap(), Default::default());
    }

    #[test]
    fn bad_run_defaults_name_the_option() {
        for (key, value, want) in [
            ("add-hosts", "db", "invalid key-value pair db"),
            ("add-hosts", "db=not-an-ip", "failed to parse IP not-an-ip"),
            ("force-network-mode", "bridge", "invalid netmode bridge"),
            ("shm-size", "lots", "invalid shm size lots"),
            ("ulimit", "nofiles=1", "invalid ulimit type: nofiles"),
            (
                "ulimit",
                "nofile=2:1",
                "soft limit must be less than or equal",
            ),
        ] {
            let e = run_defaults(&opts(&[(key, value)]))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key) && e.contains(want), "{key}={value}: {e}");
        }
    }
}
