//! `--build-context NAME=VALUE` (buildx's spelling) as buildctl spells it: a `context:NAME`
//! frontend option, plus a session directory for a local path or an OCI layout.
//!
//! VALUE is a directory, `docker-image://REF`, `oci-layout://PATH[:TAG|@DIGEST]`, or a form
//! passed through for the frontend to judge (`git`, `http(s)`, `input:`).

use anyhow::{Context, Result, bail};
use kiln_engine::control::LocalSession;
use kiln_oci::descriptor::ANNOTATION_REF_NAME;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Adds one `--build-context` to the request's frontend options and the session.
pub fn add(
    spec: &str,
    attrs: &mut BTreeMap<String, String>,
    session: &mut LocalSession,
) -> Result<()> {
    let (name, value) = crate::flags::key_value(spec, "--build-context")?;
    if name.eq_ignore_ascii_case("context") || name.eq_ignore_ascii_case("scratch") {
        bail!("--build-context {spec:?}: {name:?} cannot be a named context");
    }
    let value = if value.starts_with("docker-image://")
        || value.starts_with("git@")
        || value.starts_with("input:")
        || ["git", "http", "https"]
            .iter()
            .any(|s| value.starts_with(&format!("{s}://")))
    {
        value
    } else if let Some(layout) = value.strip_prefix("oci-layout://") {
        let (path, digest) = oci_layout(layout)
            .with_context(|| format!("--build-context {name}=oci-layout://{layout}"))?;
        let store = store_id(&name);
        insert_local(session, &store, path, &name)?;
        format!("oci-layout://{store}@{digest}")
    } else {
        let dir = std::path::absolute(&value)
            .with_context(|| format!("--build-context {name}: resolving {value}"))?;
        if !dir.is_dir() {
            bail!(
                "--build-context {name}={value}: {} is not a directory (use docker-image://REF for an image)",
                dir.display()
            );
        }
        insert_local(session, &name, dir, &name)?;
        format!("local:{name}")
    };
    attrs.insert(format!("context:{name}"), value);
    Ok(())
}

fn insert_local(session: &mut LocalSession, local: &str, dir: PathBuf, name: &str) -> Result<()> {
    if session.locals.contains_key(local) {
        bail!("--build-context {name}: a local directory named {local:?} is already given");
    }
    session.locals.insert(local.to_string(), dir);
    Ok(())
}

/// The OCI store id for a context: a valid reference name, as BuildKit's parser wants.
fn store_id(name: &str) -> String {
    let mut id = String::from("oci-layout-");
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            id.push(c.to_ascii_lowercase());
        } else if !id.ends_with('-') {
            id.push('-');
        }
    }
    id.trim_end_matches('-').to_string()
}

/// `PATH[:TAG|@DIGEST]` to the layout directory and the digest of the image, as buildx
/// resolves it on the client: a digest as given, else the tag (default `latest`) from
/// `index.json`, else the layout's only image.
fn oci_layout(spec: &str) -> Result<(PathBuf, String)> {
    let (rest, digest) = match spec.rsplit_once('@') {
        Some((p, d)) if d.starts_with("sha256:") => (p, Some(d.to_string())),
        _ => (spec, None),
    };
    let last = rest.rfind('/').map_or(0, |i| i + 1);
    let (path, tag) = match rest[last..].rfind(':') {
        Some(i) => (&rest[..last + i], Some(&rest[last + i + 1..])),
        None => (rest, None),
    };
    let dir = std::path::absolute(Path::new(path)).with_context(|| format!("resolving {path}"))?;
    let index = kiln_oci::read_layout_index(&dir)?;
    if let Some(d) = digest {
        if kiln_oci::sha256_hex(&d).is_none() {
            bail!("invalid digest {d:?}");
        }
        return Ok((dir, d));
    }
    let tagged = |t: &str| {
        index.manifests.iter().find(|m| {
            m.annotations
                .get(ANNOTATION_REF_NAME)
                .is_some_and(|r| r == t || r.rsplit_once(':').is_some_and(|(_, x)| x == t))
        })
    };
    let found = match tag {
        Some(t) => tagged(t).with_context(|| {
            format!("{} has no image tagged {t:?} in index.json", dir.display())
        })?,
        None => match (tagged("latest"), index.manifests.as_slice()) {
            (Some(m), _) | (None, [m]) => m,
            _ => bail!(
                "{} holds {} images and none is tagged latest: name one as PATH:TAG or PATH@DIGEST",
                dir.display(),
                index.manifests.len()
            ),
        },
    };
    Ok((dir, found.digest.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_ids_are_reference_names() {
        assert_eq!(store_id("img"), "oci-layout-img");
        assert_eq!(store_id("My/Img:1"), "oci-layout-my-img-1");
    }

    #[test]
    fn values_map_to_buildctl_spelling() {
        let mut attrs = BTreeMap::new();
        let mut session = LocalSession::default();
        add("base=docker-image://busybox", &mut attrs, &mut session).unwrap();
        assert_eq!(attrs["context:base"], "docker-image://busybox");
        let dir = std::env::temp_dir();
        add(&format!("src={}", dir.display()), &mut attrs, &mut session).unwrap();
        assert_eq!(attrs["context:src"], "local:src");
        assert_eq!(session.locals["src"], dir);
        let err = add("x=/no/such/dir", &mut attrs, &mut session).unwrap_err();
        assert!(err.to_string().contains("is not a directory"), "{err}");
        let err = add("y=oci-layout:///no/such/layout", &mut attrs, &mut session).unwrap_err();
        assert!(format!("{err:#}").contains("/no/such/layout"), "{err:#}");
    }
}
