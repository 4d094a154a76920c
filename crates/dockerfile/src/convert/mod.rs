//! Dockerfile to LLB, following BuildKit's `dockerfile2llb` step for step so that the ops (and
//! their digests) and the image config are the ones BuildKit produces.
//!
//! The build context's source op lists the context paths the build reads, which is known only
//! after every stage is converted; BuildKit patches a mutable output, we convert twice.

mod dispatch;
mod named;
mod ops;
mod remote;
mod run;
mod source_map;
mod stages;
mod syntax;
mod util;

use crate::instructions::InstructionError;
use kiln_llb::pb;
use std::collections::BTreeMap;

pub use stages::default_platform_args;
pub(crate) use stages::parse_platform as parse_platform_str;

/// What the conversion needs besides the Dockerfile.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    pub target: Option<String>,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// `.dockerignore` patterns; they become the context source's `local.excludepatterns`.
    pub ignore_patterns: Vec<String>,
    pub target_platform: pb::Platform,
    pub build_platform: pb::Platform,
    pub context_name: String,
    /// `local.unique` of the context source; `None` picks a random one as BuildKit does
    /// without a session.
    pub local_unique: Option<String>,
    pub shared_key_hint: String,
    /// The Dockerfile's name in the Definition's source map. Empty means no source map, as
    /// BuildKit's `dockerfile2llb` with no `SourceMap`: every op is listed with no location.
    pub source_map_filename: String,
    /// Named contexts by name (`context:NAME` opts; `NAME::os/arch` for one platform).
    pub named_contexts: BTreeMap<String, NamedContext>,
    /// The client's session id (`local.session` / `oci.session` of named contexts).
    pub session_id: Option<String>,
    /// Check options from the client (`check` / `BUILDKIT_DOCKERFILE_CHECK`); they replace the
    /// file's `# check=` directive, as in BuildKit.
    pub lint: Option<crate::lint::Config>,
    /// Convert every stage, not only those the target needs (lint requests without a target).
    pub all_stages: bool,
    /// What every RUN gets from the client's options (`add-hosts`, `hostname`, ...).
    pub run_defaults: RunDefaults,
}

/// The dockerfile.v0 options that apply to every RUN step, as dockerui parses them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunDefaults {
    /// `add-hosts`: (host, ip) lines for /etc/hosts.
    pub extra_hosts: Vec<(String, String)>,
    /// `hostname` (or `build-arg:BUILDKIT_SANDBOX_HOSTNAME`).
    pub hostname: String,
    /// `force-network-mode`, as `pb::NetMode`; RUN --network overrides it.
    pub network: i32,
    /// `shm-size` in bytes: a tmpfs of that size on /dev/shm.
    pub shm_size: i64,
    /// `ulimit`: (name, soft, hard).
    pub ulimits: Vec<(String, i64, i64)>,
    /// `cgroup-parent`.
    pub cgroup_parent: String,
}

/// A named context as the client gave it (`context:NAME=VALUE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NamedContext {
    /// `docker-image://REF`, `local:LOCALNAME`, `oci-layout://STORE@DIGEST`; parsed when used,
    /// as BuildKit does, so an unused bad value is no error.
    pub value: String,
    /// For `local:`, the patterns of that directory's `.dockerignore`.
    pub excludes: Vec<String>,
}

impl Default for ConvertOptions {
    fn default() -> Self {
        ConvertOptions {
            target: None,
            build_args: BTreeMap::new(),
            labels: BTreeMap::new(),
            ignore_patterns: Vec::new(),
            target_platform: kiln_llb::host_platform(),
            build_platform: kiln_llb::host_platform(),
            context_name: "context".into(),
            local_unique: None,
            shared_key_hint: "context".into(),
            source_map_filename: "Dockerfile".into(),
            named_contexts: BTreeMap::new(),
            session_id: None,
            lint: None,
            all_stages: false,
            run_defaults: RunDefaults::default(),
        }
    }
}

/// Looks image configs up; the only way registry data reaches this crate.
pub trait ImageResolver {
    /// Resolves an image reference (as written after FROM / COPY --from, already expanded)
    /// for a platform.
    fn resolve(&self, reference: &str, platform: &pb::Platform) -> Result<ResolvedImage, String>;

    /// Resolves `digest` (an index or a manifest) in the client's OCI layout store `store`,
    /// for an `oci-layout://` named context.
    fn resolve_oci_layout(
        &self,
        store: &str,
        digest: &str,
        _platform: &pb::Platform,
    ) -> Result<ResolvedImage, String> {
        Err(format!(
            "OCI layout store {store:?} ({digest}) cannot be read: this build has no OCI layout stores"
        ))
    }
}

/// A resolved base image.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// Normalized reference, e.g. `localhost:5000/busybox:latest`.
    pub reference: String,
    /// Manifest digest, `sha256:...`.
    pub digest: String,
    pub config: kiln_oci::Image,
}

/// The result: the LLB definition and the image config of the target stage.
#[derive(Debug, Clone)]
pub struct Converted {
    pub definition: pb::Definition,
    pub image: kiln_oci::Image,
    /// Build-check findings, in the order BuildKit reports them.
    pub warnings: Vec<crate::lint::Warning>,
    /// Lines for the progress display (which frontend built the file).
    pub notes: Vec<String>,
}

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Parse(#[from] crate::parser::ParseError),
    #[error(transparent)]
    Instruction(#[from] InstructionError),
    /// An instruction that parsed but cannot be converted.
    #[error("dockerfile line {line}: {instruction}: {message}")]
    Dispatch {
        line: usize,
        instruction: String,
        message: String,
    },
    /// A problem with the file or options as a whole.
    #[error("{0}")]
    Invalid(String),
    /// A problem between stages, at the line that shows it.
    #[error("dockerfile line {line}: {message}")]
    Stage { line: usize, message: String },
    /// `# syntax=` names a frontend other than the built-in one.
    #[error(
        "dockerfile line {line}: syntax {reference:?}: external frontends are not supported yet (only docker/dockerfile, which is built in)"
    )]
    ExternalFrontend { line: usize, reference: String },
    /// Checks fired with `error=true`; the warnings are carried so they can still be shown.
    #[error("{message}")]
    Lint {
        message: String,
        warnings: Vec<crate::lint::Warning>,
    },
}

/// Converts a Dockerfile to LLB and the image config of the target stage.
pub fn dockerfile_to_llb(
    dockerfile: &[u8],
    opts: &ConvertOptions,
    resolver: &dyn ImageResolver,
) -> Result<Converted, ConvertError> {
    if dockerfile.is_empty() {
        return Err(ConvertError::Invalid(
            "the Dockerfile cannot be empty".into(),
        ));
    }
    let parsed = crate::parser::parse(dockerfile)?;
    let notes = syntax::check(&parsed, dockerfile, opts)?
        .into_iter()
        .collect();
    let config = match &opts.lint {
        Some(c) => c.clone(),
        None => lint_directive(&parsed)?,
    };
    let mut linter = crate::lint::Linter::new(config, &parsed.ast);
    crate::lint::parse_checks::run(&parsed, opts, &mut linter);
    let unique = opts.local_unique.clone().unwrap_or_else(random_id);
    // First pass: learn which context paths are read; second pass: the real context source.
    let placeholder = ops::local_source(&opts.context_name, &[], &[], "", "");
    let first = stages::convert(&parsed, opts, resolver, placeholder, linter.clone())?;
    let ctx = ops::local_source(
        &opts.context_name,
        &first.context_paths,
        &opts.ignore_patterns,
        &opts.shared_key_hint,
        &unique,
    );
    let second = stages::convert(&parsed, opts, resolver, ctx, linter)?;
    if let Some(message) = second.linter.error() {
        return Err(ConvertError::Lint {
            message,
            warnings: second.linter.into_warnings(),
        });
    }
    let (mut definition, visited) = ops::marshal(second.output.as_ref());
    if second.output.is_some() {
        let file = (!opts.source_map_filename.is_empty()).then(|| source_map::SourceFile {
            filename: &opts.source_map_filename,
            data: dockerfile,
        });
        definition.source = Some(source_map::build(&visited, &second.locations, file));
    }
    Ok(Converted {
        definition,
        image: second.image,
        warnings: second.linter.into_warnings(),
        notes,
    })
}

/// The file's `# check=` directive (BuildKit reads it with the same parser as `syntax`).
fn lint_directive(
    parsed: &crate::parser::ParseResult,
) -> Result<crate::lint::Config, ConvertError> {
    let Some(d) = parsed.directives.iter().find(|d| d.name == "check") else {
        return Ok(crate::lint::Config::default());
    };
    crate::lint::Config::parse(&d.value)
        .map_err(|e| ConvertError::Invalid(format!("failed to parse check options: {e}")))
}

/// 25 characters of [a-z0-9], like BuildKit's `identity.NewID()`, from the clock and address
/// entropy available without I/O.
fn random_id() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::new();
    while out.len() < 25 {
        let mut h = RandomState::new().build_hasher();
        h.write_usize(out.len());
        let mut v = h.finish();
        for _ in 0..8 {
            if out.len() == 25 {
                break;
            }
            out.push(ALPHABET[(v % 36) as usize] as char);
            v /= 36;
        }
    }
    out
}
