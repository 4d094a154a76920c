//! Named contexts (`context:NAME=VALUE`, buildx's `--build-context`), as BuildKit's dockerui
//! resolves them: FROM, COPY --from and stage names look a name up here before anything else.
//!
//! Lookup (dockerui's `NamedContext`): the name is normalised as an image reference and written
//! the short way (`docker.io/library/alpine:latest` is `alpine`), then `NAME::os/arch[/variant]`
//! is tried before `NAME`. `scratch` and `context` are never looked up.

use super::ops::{self, LState};
use super::util::normalize_ref;
use super::{ConvertOptions, ImageResolver, NamedContext};
use kiln_llb::{Output, Vertex, pb};
use std::collections::BTreeMap;

/// A named context found for a name: the key it was found under and its value.
#[derive(Debug, Clone)]
pub(crate) struct Found {
    /// `NAME` or `NAME::platform`, as progress names it (`[context NAME] …`).
    pub name_with_platform: String,
    /// The name as looked up (no platform), for references made up from it.
    pub name: String,
    pub context: NamedContext,
}

/// What loading a named context gives: its state and, for images, its config.
pub(crate) struct Loaded {
    pub state: LState,
    pub image: Option<kiln_oci::Image>,
}

/// Docker's short spelling of a reference: `docker.io/library/` dropped, `:latest` dropped.
fn familiar(name: &str) -> Result<String, String> {
    let full = normalize_ref(name).map_err(|e| format!("invalid context name {name}: {e}"))?;
    let short = match full.strip_prefix("docker.io/") {
        Some(rest) => match rest.strip_prefix("library/") {
            Some(r) if !r.split(['@', ':']).next().unwrap_or_default().contains('/') => r,
            _ => rest,
        },
        None => full.as_str(),
    };
    Ok(short.strip_suffix(":latest").unwrap_or(short).to_string())
}

fn platform_string(p: &pb::Platform) -> String {
    if p.variant.is_empty() {
        format!("{}/{}", p.os, p.architecture)
    } else {
        format!("{}/{}/{}", p.os, p.architecture, p.variant)
    }
}

/// The named context for `name` on `platform` (the target platform when `None`), if any.
pub(crate) fn lookup(
    opts: &ConvertOptions,
    name: &str,
    platform: Option<&pb::Platform>,
) -> Result<Option<Found>, String> {
    if opts.named_contexts.is_empty()
        || name.eq_ignore_ascii_case("scratch")
        || name.eq_ignore_ascii_case("context")
    {
        return Ok(None);
    }
    let name = familiar(name)?;
    let platform = platform.unwrap_or(&opts.target_platform);
    let with_platform = format!("{name}::{}", platform_string(platform));
    for key in [&with_platform, &name] {
        if let Some(context) = opts.named_contexts.get(key.as_str()) {
            return Ok(Some(Found {
                name_with_platform: key.clone(),
                name: name.clone(),
                context: context.clone(),
            }));
        }
    }
    Ok(None)
}

/// BuildKit's `NamedContext.load`: the context's LLB state and image config.
pub(crate) fn load(
    found: &Found,
    platform: &pb::Platform,
    opts: &ConvertOptions,
    resolver: &dyn ImageResolver,
) -> Result<Loaded, String> {
    let nc = &found.name_with_platform;
    let value = &found.context.value;
    let Some((scheme, rest)) = value.split_once(':') else {
        return Err(format!("invalid context specifier {value} for {nc}"));
    };
    match scheme {
        "docker-image" => {
            let reference = rest.strip_prefix("//").unwrap_or(rest);
            if reference == "scratch" {
                return Ok(Loaded {
                    state: LState::new(None),
                    image: None,
                });
            }
            let normalized = normalize_ref(reference)
                .map_err(|e| format!("context {nc}: docker-image://{reference}: {e}"))?;
            let resolved = resolver
                .resolve(&normalized, platform)
                .map_err(|e| format!("context {nc}: {reference}: {e}"))?;
            let md = ops::metadata(
                &[("llb.customname", &format!("[context {nc}] {reference}"))],
                &["source.image"],
            );
            // As BuildKit's dockerui: the tag as given, resolved again by the source itself.
            let out = ops::image_source(&format!("docker-image://{normalized}"), platform, md);
            Ok(with_image(out, resolved.config))
        }
        "oci-layout" => {
            let spec = rest.strip_prefix("//").unwrap_or(rest);
            let (named, digest) = spec.rsplit_once('@').ok_or_else(|| {
                format!("context {nc}: oci-layout reference {spec:?} has no digest")
            })?;
            if kiln_oci::sha256_hex(digest).is_none() {
                return Err(format!(
                    "context {nc}: could not parse oci-layout reference {spec:?}: invalid digest"
                ));
            }
            // The store id is the reference's name: its tag, if any, is not part of it.
            let last = named.rfind('/').map_or(0, |i| i + 1);
            let store = match named[last..].rfind(':') {
                Some(i) => &named[..last + i],
                None => named,
            };
            if store.is_empty() {
                return Err(format!(
                    "context {nc}: oci-layout reference {spec:?} has no name"
                ));
            }
            let dummy = normalize_ref(&format!("{}@{digest}", found.name)).map_err(|e| {
                format!("could not parse oci-layout reference {:?}: {e}", found.name)
            })?;
            let resolved = resolver
                .resolve_oci_layout(store, digest, platform)
                .map_err(|e| format!("context {nc}: oci-layout {store}@{digest}: {e}"))?;
            let mut attrs = BTreeMap::new();
            if let Some(session) = &opts.session_id {
                attrs.insert("oci.session".to_string(), session.clone());
            }
            attrs.insert("oci.store".to_string(), store.to_string());
            let md = ops::metadata(
                &[(
                    "llb.customname",
                    &format!("[context {nc}] OCI load from client"),
                )],
                &["source.ocilayout"],
            );
            let op = pb::Op {
                platform: Some(platform.clone()),
                constraints: Some(pb::WorkerConstraints::default()),
                op: Some(pb::op::Op::Source(pb::SourceOp {
                    identifier: format!("oci-layout://{dummy}"),
                    attrs,
                })),
                ..Default::default()
            };
            Ok(with_image(Vertex::output(op, vec![], md), resolved.config))
        }
        "local" => {
            let unique = opts.local_unique.clone().unwrap_or_default();
            let out = ops::named_local_source(
                rest,
                opts.session_id.as_deref(),
                &found.context.excludes,
                &format!("context:{nc}-"),
                &unique,
                &format!("[context {nc}] load from client"),
            );
            Ok(Loaded {
                state: LState::new(Some(out)),
                image: None,
            })
        }
        "git" | "http" | "https" => Err(format!(
            "context {nc}: {scheme} contexts are not supported yet (a directory, docker-image:// and oci-layout:// are)"
        )),
        "input" => Err(format!(
            "context {nc}: input: contexts come from frontends calling frontends, which Kiln does not support yet"
        )),
        _ => Err(format!("unsupported context source {scheme} for {nc}")),
    }
}

/// An image's state as `llb.State.WithImageConfig` makes it: env, working dir and user.
fn with_image(out: Output, mut image: kiln_oci::Image) -> Loaded {
    image.created = None;
    let mut state = LState::new(Some(out));
    for e in &image.config.env {
        let (k, v) = e.split_once('=').unwrap_or((e, ""));
        state.env.add_or_replace(k, v);
    }
    if !image.config.working_dir.is_empty() {
        state.dir = image.config.working_dir.clone();
    }
    state.user = image.config.user.clone();
    Loaded {
        state,
        image: Some(image),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_looked_up_the_short_way() {
        assert_eq!(familiar("alpine").unwrap(), "alpine");
        assert_eq!(
            familiar("docker.io/library/alpine:latest").unwrap(),
            "alpine"
        );
        assert_eq!(familiar("alpine:3.18").unwrap(), "alpine:3.18");
        assert_eq!(familiar("docker.io/foo/bar").unwrap(), "foo/bar");
        assert_eq!(
            familiar("localhost:5000/busybox:latest").unwrap(),
            "localhost:5000/busybox"
        );
    }

    #[test]
    fn platform_specific_names_win() {
        let mut opts = ConvertOptions::default();
        let p = opts.target_platform.clone();
        let plain = NamedContext {
            value: "local:a".into(),
            ..Default::default()
        };
        let specific = NamedContext {
            value: "local:b".into(),
            ..Default::default()
        };
        opts.named_contexts.insert("base".into(), plain.clone());
        assert_eq!(lookup(&opts, "base", None).unwrap().unwrap().context, plain);
        opts.named_contexts
            .insert(format!("base::{}", platform_string(&p)), specific.clone());
        let found = lookup(&opts, "docker.io/library/base:latest", Some(&p))
            .unwrap()
            .unwrap();
        assert_eq!(found.context, specific);
        assert!(found.name_with_platform.starts_with("base::"));
        assert!(lookup(&opts, "other", None).unwrap().is_none());
        opts.named_contexts.insert("scratch".into(), plain);
        assert!(lookup(&opts, "scratch", None).unwrap().is_none());
    }

    /// Images whose config says where they came from (`FROM_IMAGE` in env).
    struct Resolver;

    fn image(marker: &str) -> kiln_oci::Image {
        let mut img = kiln_oci::Image {
            architecture: "arm64".into(),
            os: "linux".into(),
            ..Default::default()
        };
        img.config.env = vec!["PATH=/bin".into(), format!("FROM_IMAGE={marker}")];
        img.config.working_dir = "/work".into();
        img.rootfs.diff_ids = vec![format!("sha256:{}", "1".repeat(64))];
        img
    }

    impl ImageResolver for Resolver {
        fn resolve(&self, reference: &str, _: &pb::Platform) -> Result<ResolvedImage, String> {
            Ok(ResolvedImage {
                reference: reference.to_string(),
                digest: format!("sha256:{}", "a".repeat(64)),
                config: image(reference),
            })
        }

        fn resolve_oci_layout(
            &self,
            store: &str,
            digest: &str,
            _: &pb::Platform,
        ) -> Result<ResolvedImage, String> {
            Ok(ResolvedImage {
                reference: format!("{store}@{digest}"),
                digest: digest.to_string(),
                config: image(&format!("layout {store}")),
            })
        }
    }

    use super::super::{ResolvedImage, dockerfile_to_llb};
    use kiln_proto::Message;

    #[derive(Debug)]
    struct Out {
        /// Source identifiers with their attrs and progress names, in definition order.
        sources: Vec<(String, BTreeMap<String, String>, String)>,
        runs: Vec<Vec<String>>,
        image: kiln_oci::Image,
    }

    fn convert(dockerfile: &str, contexts: &[(&str, &str)]) -> Result<Out, String> {
        let mut opts = ConvertOptions {
            local_unique: Some("u".into()),
            session_id: Some("s".into()),
            ..Default::default()
        };
        for (k, v) in contexts {
            let excludes = if v.starts_with("local:") {
                vec!["*.tmp".to_string()]
            } else {
                Vec::new()
            };
            opts.named_contexts.insert(
                k.to_string(),
                NamedContext {
                    value: v.to_string(),
                    excludes,
                },
            );
        }
        let c = dockerfile_to_llb(dockerfile.as_bytes(), &opts, &Resolver)
            .map_err(|e| e.to_string())?;
        let mut out = Out {
            sources: Vec::new(),
            runs: Vec::new(),
            image: c.image,
        };
        for bytes in &c.definition.def {
            let op = pb::Op::decode(bytes.as_slice()).unwrap();
            let digest = kiln_llb::op_digest(&op);
            let name = c.definition.metadata[&digest]
                .description
                .get("llb.customname")
                .cloned()
                .unwrap_or_default();
            match op.op {
                Some(pb::op::Op::Source(src)) => {
                    out.sources.push((src.identifier, src.attrs, name))
                }
                Some(pb::op::Op::Exec(e)) => out.runs.push(e.meta.unwrap().args),
                _ => {}
            }
        }
        Ok(out)
    }

    fn env(img: &kiln_oci::Image, key: &str) -> Option<String> {
        img.config
            .env
            .iter()
            .find_map(|e| e.strip_prefix(&format!("{key}=")).map(str::to_string))
    }

    #[test]
    fn from_a_docker_image_context() {
        let out = convert(
            "FROM base\nRUN true\n",
            &[("base", "docker-image://localhost:5000/busybox")],
        )
        .unwrap();
        let (id, _, name) = &out.sources[0];
        assert_eq!(id, "docker-image://localhost:5000/busybox:latest");
        assert_eq!(name, "[context base] localhost:5000/busybox");
        assert_eq!(
            env(&out.image, "FROM_IMAGE").as_deref(),
            Some("localhost:5000/busybox:latest")
        );
        assert_eq!(out.image.config.working_dir, "/work");
        assert_eq!(out.runs.len(), 1);
    }

    #[test]
    fn a_context_overrides_an_image_name() {
        let out = convert("FROM alpine\nRUN true\n", &[("alpine", "local:alp")]).unwrap();
        assert_eq!(
            out.sources.len(),
            1,
            "no docker-image op: {:?}",
            out.sources
        );
        let (id, attrs, name) = &out.sources[0];
        assert_eq!(id, "local://alp");
        assert_eq!(name, "[context alpine] load from client");
        assert_eq!(attrs["local.sharedkeyhint"], "context:alpine-");
        assert_eq!(attrs["local.session"], "s");
        assert_eq!(attrs["local.excludepatterns"], r#"["*.tmp"]"#);
        // No image config: the stage starts from an empty one.
        assert_eq!(env(&out.image, "FROM_IMAGE"), None);
        assert!(env(&out.image, "PATH").is_some());
    }

    #[test]
    fn a_context_replaces_a_stage_of_that_name() {
        let df = "FROM busybox AS build\nRUN make\nFROM scratch\nCOPY --from=build /a /a\n";
        let out = convert(df, &[("build", "docker-image://other")]).unwrap();
        assert!(
            out.runs.is_empty(),
            "the stage's RUN is gone: {:?}",
            out.runs
        );
        let ids: Vec<&str> = out.sources.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(ids, ["docker-image://docker.io/library/other:latest"]);
        // Without the context the stage is built.
        let out = convert(df, &[]).unwrap();
        assert_eq!(out.runs, [vec!["/bin/sh", "-c", "make"]]);
    }

    #[test]
    fn copy_from_a_local_context() {
        let df = "FROM scratch\nCOPY --from=src /f /f\n";
        let out = convert(df, &[("src", "local:srcdir")]).unwrap();
        let ids: Vec<&str> = out.sources.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(ids, ["local://srcdir"]);
        // Unknown names are images, as without contexts.
        let out = convert("FROM scratch\nCOPY --from=nosuch /f /f\n", &[]).unwrap();
        assert!(
            out.sources[0].0.starts_with("docker-image://nosuch@"),
            "{:?}",
            out.sources
        );
    }

    #[test]
    fn from_an_oci_layout_context() {
        let digest = format!("sha256:{}", "b".repeat(64));
        let value = format!("oci-layout://oci-layout-img@{digest}");
        let out = convert("FROM img\nRUN true\n", &[("img", &value)]).unwrap();
        let (id, attrs, name) = &out.sources[0];
        assert_eq!(id, &format!("oci-layout://docker.io/library/img@{digest}"));
        assert_eq!(attrs["oci.store"], "oci-layout-img");
        assert_eq!(attrs["oci.session"], "s");
        assert_eq!(name, "[context img] OCI load from client");
        assert_eq!(
            env(&out.image, "FROM_IMAGE").as_deref(),
            Some("layout oci-layout-img")
        );
        let err = convert("FROM img\n", &[("img", "oci-layout://store")]).unwrap_err();
        assert!(err.contains("has no digest"), "{err}");
    }

    #[test]
    fn bad_values_fail_only_when_used() {
        let err = convert("FROM base\n", &[("base", "nonsense")]).unwrap_err();
        assert!(
            err.contains("invalid context specifier nonsense for base"),
            "{err}"
        );
        assert!(err.contains("line 1"), "{err}");
        let err = convert("FROM base\n", &[("base", "ftp:x")]).unwrap_err();
        assert!(
            err.contains("unsupported context source ftp for base"),
            "{err}"
        );
        convert("FROM scratch\n", &[("base", "nonsense")]).unwrap();
    }
}
