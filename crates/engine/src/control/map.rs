//! A Control API `SolveRequest` onto the engine's own request. Requests are untrusted: every
//! field is checked here, and what Kiln cannot do yet is refused by name rather than ignored.

use super::session::{LocalSession, SessionRegistry};
use crate::{ExportDest, ExportKind, ExportRequest, SolveRequest};
use kiln_proto::control;
use std::collections::BTreeMap;

/// Longest build ref accepted (BuildKit's are 25 characters).
const MAX_REF_LEN: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error(
        "the solve request has no ref: the client names each build so that Status can follow it"
    )]
    MissingRef,
    #[error("ref {0:?} is not valid: use up to 256 letters, digits, '-', '_' or '.'")]
    BadRef(String),
    #[error(
        "session {0:?} is not known to this engine: an in-process client registers its session \
         (local directories and export destinations) before Solve; remote sessions are not supported yet"
    )]
    UnknownSession(String),
    #[error("exporter {index} (type={kind}): {message}")]
    Exporter {
        index: usize,
        kind: String,
        message: String,
    },
    #[error("{0} is not supported yet")]
    Unsupported(&'static str),
    #[error("{0}")]
    Invalid(String),
}

/// Checks a client-chosen build ref (it keys progress buffers).
pub fn check_ref(r: &str) -> Result<(), RequestError> {
    if r.is_empty() {
        return Err(RequestError::MissingRef);
    }
    let ok = r.len() <= MAX_REF_LEN
        && r.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(RequestError::BadRef(r.chars().take(64).collect()))
    }
}

/// The engine request a proto request stands for, with locals and export destinations taken
/// from the session it names.
pub fn solve_request(
    req: &control::SolveRequest,
    sessions: &SessionRegistry,
) -> Result<SolveRequest, RequestError> {
    check_ref(&req.r#ref)?;
    if let Some(cache) = &req.cache {
        if !cache.imports.is_empty() || !cache.import_refs_deprecated.is_empty() {
            return Err(RequestError::Unsupported("cache import (--import-cache)"));
        }
        if !cache.exports.is_empty() || !cache.export_ref_deprecated.is_empty() {
            return Err(RequestError::Unsupported("cache export (--export-cache)"));
        }
    }
    if !req.frontend_inputs.is_empty() {
        return Err(RequestError::Unsupported("frontend inputs"));
    }
    // No session is fine for a build that reads no local dirs and exports nothing.
    let session = if req.session.is_empty() {
        std::sync::Arc::new(LocalSession::default())
    } else {
        sessions
            .get(&req.session)
            .ok_or_else(|| RequestError::UnknownSession(req.session.chars().take(64).collect()))?
    };
    let mut out = SolveRequest {
        definition: req
            .definition
            .as_ref()
            .map(kiln_proto::Message::encode_to_vec),
        frontend: (!req.frontend.is_empty()).then(|| req.frontend.clone()),
        frontend_opts: req.frontend_attrs.clone(),
        locals: session.locals.clone(),
        secrets: session.secrets.clone(),
        ..Default::default()
    };
    for e in &req.entitlements {
        match e.as_str() {
            "network.host" | "security.insecure" => {
                out.entitlements.insert(e.clone());
            }
            other => {
                return Err(RequestError::Invalid(format!(
                    "unknown entitlement {other:?} (network.host and security.insecure are known)"
                )));
            }
        }
    }
    // buildctl's --no-cache is the `no-cache` attribute; a list of stages means "some stages",
    // which the solver cannot single out yet, so those (and everything else) run again.
    out.no_cache = req.frontend_attrs.contains_key("no-cache");

    let deprecated;
    let exporters: &[control::Exporter] =
        if req.exporters.is_empty() && !req.exporter_deprecated.is_empty() {
            deprecated = [control::Exporter {
                r#type: req.exporter_deprecated.clone(),
                attrs: req.exporter_attrs_deprecated.clone(),
            }];
            &deprecated
        } else {
            &req.exporters
        };
    for (index, exp) in exporters.iter().enumerate() {
        out.exports.push(export(
            index,
            exp,
            session.exports.get(index),
            &req.session,
        )?);
    }
    Ok(out)
}

fn export(
    index: usize,
    exp: &control::Exporter,
    dest: Option<&ExportDest>,
    session: &str,
) -> Result<ExportRequest, RequestError> {
    let err = |message: String| RequestError::Exporter {
        index,
        kind: exp.r#type.chars().take(64).collect(),
        message,
    };
    let kind = match exp.r#type.as_str() {
        "oci" => ExportKind::Oci,
        "tar" => ExportKind::Tar,
        "local" => ExportKind::Local,
        "image" | "registry" => ExportKind::Image,
        "docker" | "moby" => {
            return Err(err(
                "not supported: there is no Docker daemon to load into (use type=image,push=true or type=oci)"
                    .into(),
            ));
        }
        _ => {
            return Err(err(
                "unknown exporter (image, registry, oci, tar and local are supported)".into(),
            ));
        }
    };
    let mut attrs: BTreeMap<String, String> = exp.attrs.clone();
    // The destination is the session's; a path in the attributes would name the server's disk.
    attrs.remove("dest");
    if kind == ExportKind::Image {
        // BuildKit's `registry` exporter is `image` with push=true.
        if exp.r#type == "registry" {
            attrs.insert("push".into(), "true".into());
        }
        return Ok(ExportRequest {
            kind,
            dest: ExportDest::None,
            attrs,
        });
    }
    let dest = dest.ok_or_else(|| {
        err(format!(
            "no destination: session {session:?} offers none for this exporter"
        ))
    })?;
    match (&kind, dest) {
        (ExportKind::Local, ExportDest::Dir(_))
        | (ExportKind::Oci | ExportKind::Tar, ExportDest::File(_) | ExportDest::Stdout) => {}
        (ExportKind::Local, _) => return Err(err("needs a directory destination".into())),
        _ => return Err(err("needs a file destination".into())),
    }
    Ok(ExportRequest {
        kind,
        dest: dest.clone(),
        attrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn request(session: &str) -> control::SolveRequest {
        control::SolveRequest {
            r#ref: "abc123".into(),
            session: session.into(),
            ..Default::default()
        }
    }

    fn exporter(t: &str, attrs: &[(&str, &str)]) -> control::Exporter {
        control::Exporter {
            r#type: t.into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn exporters_take_their_destination_from_the_session() {
        let reg = SessionRegistry::new();
        let guard = reg.register(LocalSession {
            locals: [("context".to_string(), PathBuf::from("/ctx"))].into(),
            exports: vec![
                ExportDest::File("/out/img.tar".into()),
                ExportDest::Dir("/out/dir".into()),
                ExportDest::Stdout,
            ],
            ..Default::default()
        });
        let mut req = request(guard.id());
        req.exporters = vec![
            exporter("oci", &[("name", "x"), ("dest", "/elsewhere")]),
            exporter("local", &[]),
            exporter("tar", &[]),
        ];
        let out = solve_request(&req, &reg).unwrap();
        assert_eq!(out.locals["context"], PathBuf::from("/ctx"));
        let kinds: Vec<_> = out.exports.iter().map(|e| e.kind.clone()).collect();
        assert_eq!(kinds, [ExportKind::Oci, ExportKind::Local, ExportKind::Tar]);
        assert!(
            matches!(&out.exports[0].dest, ExportDest::File(p) if p == &PathBuf::from("/out/img.tar"))
        );
        assert_eq!(
            out.exports[0].attrs.get("name").map(String::as_str),
            Some("x")
        );
        assert!(!out.exports[0].attrs.contains_key("dest"));
        assert!(matches!(&out.exports[1].dest, ExportDest::Dir(_)));
        assert!(matches!(&out.exports[2].dest, ExportDest::Stdout));
    }

    #[test]
    fn exporter_errors_name_the_exporter() {
        let reg = SessionRegistry::new();
        let guard = reg.register(LocalSession {
            exports: vec![ExportDest::File("/out/x.tar".into())],
            ..Default::default()
        });
        let mut req = request(guard.id());
        req.exporters = vec![exporter("docker", &[])];
        let e = solve_request(&req, &reg).unwrap_err().to_string();
        assert!(e.contains("exporter 0 (type=docker): not supported"), "{e}");
        // type=image needs no destination; type=registry means push=true.
        req.exporters = vec![exporter("registry", &[("name", "r/x")])];
        let out = solve_request(&req, &reg).unwrap();
        assert_eq!(out.exports[0].kind, ExportKind::Image);
        assert!(matches!(out.exports[0].dest, ExportDest::None));
        assert_eq!(out.exports[0].attrs["push"], "true");
        req.exporters = vec![exporter("local", &[])];
        let e = solve_request(&req, &reg).unwrap_err().to_string();
        assert!(e.contains("needs a directory"), "{e}");
        req.exporters = vec![exporter("tar", &[]), exporter("tar", &[])];
        let e = solve_request(&req, &reg).unwrap_err().to_string();
        assert!(e.contains("exporter 1 (type=tar): no destination"), "{e}");
        req.exporters = vec![exporter("bogus", &[])];
        assert!(solve_request(&req, &reg).is_err());
    }

    #[test]
    fn deprecated_single_exporter_is_read() {
        let reg = SessionRegistry::new();
        let guard = reg.register(LocalSession {
            exports: vec![ExportDest::File("/o.tar".into())],
            ..Default::default()
        });
        let mut req = request(guard.id());
        req.exporter_deprecated = "tar".into();
        let out = solve_request(&req, &reg).unwrap();
        assert_eq!(out.exports.len(), 1);
        assert_eq!(out.exports[0].kind, ExportKind::Tar);
    }

    #[test]
    fn frontend_and_attrs_map_over() {
        let reg = SessionRegistry::new();
        let mut req = request("");
        req.frontend = "dockerfile.v0".into();
        req.frontend_attrs.insert("target".into(), "build".into());
        req.frontend_attrs.insert("build-arg:A".into(), "1".into());
        let out = solve_request(&req, &reg).unwrap();
        assert_eq!(out.frontend.as_deref(), Some("dockerfile.v0"));
        assert_eq!(out.frontend_opts["target"], "build");
        assert_eq!(out.frontend_opts["build-arg:A"], "1");
        assert!(!out.no_cache);
        assert!(out.definition.is_none());

        req.frontend_attrs.insert("no-cache".into(), String::new());
        assert!(solve_request(&req, &reg).unwrap().no_cache);

        let mut raw = request("");
        raw.definition = Some(kiln_proto::pb::Definition {
            def: vec![vec![1, 2, 3]],
            ..Default::default()
        });
        let out = solve_request(&raw, &reg).unwrap();
        assert!(out.frontend.is_none());
        let def: kiln_proto::pb::Definition =
            kiln_proto::Message::decode(out.definition.unwrap().as_slice()).unwrap();
        assert_eq!(def.def, vec![vec![1, 2, 3]]);
    }

    #[test]
    fn unknown_sessions_and_bad_refs_fail_clearly() {
        let reg = SessionRegistry::new();
        let e = solve_request(&request("nosuchsession"), &reg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("session \"nosuchsession\" is not known"), "{e}");
        let mut req = request("");
        req.r#ref = String::new();
        assert!(matches!(
            solve_request(&req, &reg),
            Err(RequestError::MissingRef)
        ));
        req.r#ref = "../x y".into();
        assert!(matches!(
            solve_request(&req, &reg),
            Err(RequestError::BadRef(_))
        ));
        req.r#ref = "a".repeat(300);
        assert!(matches!(
            solve_request(&req, &reg),
            Err(RequestError::BadRef(_))
        ));
    }

    #[test]
    fn cache_options_are_refused_by_name() {
        let reg = SessionRegistry::new();
        let mut req = request("");
        req.cache = Some(control::CacheOptions {
            imports: vec![control::CacheOptionsEntry::default()],
            ..Default::default()
        });
        let e = solve_request(&req, &reg).unwrap_err().to_string();
        assert!(e.contains("cache import"), "{e}");
    }
}
