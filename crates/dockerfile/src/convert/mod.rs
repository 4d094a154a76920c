//! Dockerfile to LLB, following BuildKit's `dockerfile2llb` step for step so that the ops (and
//! their digests) and the image config are the ones BuildKit produces.
//!
//! The build context's source op lists the context paths the build reads, which is known only
//! after every stage is converted; BuildKit patches a mutable output, we convert twice.

mod dispatch;
mod ops;
mod source_map;
mod stages;
mod util;

use crate::instructions::InstructionError;
use kiln_llb::pb;
use std::collections::BTreeMap;

pub use stages::default_platform_args;

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
        }
    }
}

/// Looks image configs up; the only way registry data reaches this crate.
pub trait ImageResolver {
    /// Resolves an image reference (as written after FROM / COPY --from, already expanded)
    /// for a platform.
    fn resolve(&self, reference: &str, platform: &pb::Platform) -> Result<ResolvedImage, String>;
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
    let unique = opts.local_unique.clone().unwrap_or_else(random_id);
    // First pass: learn which context paths are read; second pass: the real context source.
    let placeholder = ops::local_source(&opts.context_name, &[], &[], "", "");
    let first = stages::convert(&parsed, opts, resolver, placeholder)?;
    let ctx = ops::local_source(
        &opts.context_name,
        &first.context_paths,
        &opts.ignore_patterns,
        &opts.shared_key_hint,
        &unique,
    );
    let second = stages::convert(&parsed, opts, resolver, ctx)?;
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
    })
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
