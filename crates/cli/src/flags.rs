//! Flag values in buildctl's and buildx's spellings, parsed into the engine's request.

use anyhow::{Context, Result, bail};
use kiln_engine::{ExportDest, ExportKind, ExportRequest};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `K=V` into a pair; the value may contain `=`.
pub fn key_value(s: &str, what: &str) -> Result<(String, String)> {
    let (k, v) = s
        .split_once('=')
        .with_context(|| format!("{what} {s:?}: expected KEY=VALUE"))?;
    if k.is_empty() {
        bail!("{what} {s:?}: empty key");
    }
    Ok((k.to_string(), v.to_string()))
}

/// Splits a CSV of `k=v` fields as buildctl does (`type=oci,dest=out.tar`); quotes allowed.
fn csv_fields(s: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    for c in s.chars() {
        match (c, quote) {
            ('"' | '\'', None) => quote = Some(c),
            (c2, Some(q)) if c2 == q => quote = None,
            (',', None) => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields.into_iter().filter(|f| !f.is_empty()).collect()
}

/// `--secret id=ID[,src=FILE|,env=VAR][,type=file|env]`, as buildctl reads it: with neither
/// `src` nor `env`, a variable named ID if one is set, else a file named ID. Files are checked
/// now (they must exist and fit BuildKit's size limit) and read when a step mounts them.
pub fn secret(s: &str, secrets: &mut kiln_worker::Secrets) -> Result<()> {
    let (mut id, mut file, mut env, mut kind) = (String::new(), String::new(), String::new(), "");
    for field in csv_fields(s) {
        let Some((k, v)) = field.split_once('=') else {
            bail!("--secret {s:?}: invalid field '{field}' must be a key=value pair");
        };
        match k.to_lowercase().as_str() {
            "type" => {
                kind = match v {
                    "file" => "file",
                    "env" => "env",
                    _ => bail!("--secret {s:?}: unsupported secret type {v:?}"),
                }
            }
            "id" => id = v.to_string(),
            "source" | "src" => file = v.to_string(),
            "env" => env = v.to_string(),
            other => bail!("--secret {s:?}: unexpected key '{other}' in '{field}'"),
        }
    }
    if kind == "env" && env.is_empty() {
        env = std::mem::take(&mut file);
    }
    if id.is_empty() {
        bail!("--secret {s:?}: secret missing ID");
    }
    if env.is_empty() && file.is_empty() {
        if std::env::var_os(&id).is_some() {
            env = id.clone();
        } else {
            file = id.clone();
        }
    }
    let source = if env.is_empty() {
        let path = std::path::absolute(&file)
            .with_context(|| format!("--secret {s:?}: resolving {file}"))?;
        let meta = std::fs::metadata(&path)
            .with_context(|| format!("--secret {s:?}: failed to stat {file}"))?;
        if meta.len() > kiln_worker::secrets::MAX_SECRET_SIZE {
            bail!(
                "--secret {s:?}: secret {id} too big. max size {} bytes",
                kiln_worker::secrets::MAX_SECRET_SIZE
            );
        }
        kiln_worker::SecretSource::File(path)
    } else {
        kiln_worker::SecretSource::Env(env)
    };
    secrets.insert(&id, source);
    Ok(())
}

/// `--output type=oci,dest=F` (or the buildx shorthand `-o DIR`, which means type=local).
pub fn output(s: &str) -> Result<ExportRequest> {
    let fields = csv_fields(s);
    if fields.len() == 1 && !fields[0].contains('=') {
        let dest = &fields[0];
        return Ok(ExportRequest {
            kind: if dest == "-" {
                ExportKind::Tar
            } else {
                ExportKind::Local
            },
            dest: if dest == "-" {
                ExportDest::Stdout
            } else {
                ExportDest::Dir(PathBuf::from(dest))
            },
            attrs: BTreeMap::new(),
        });
    }
    let mut attrs = BTreeMap::new();
    for f in &fields {
        let (k, v) = key_value(f, "--output field")?;
        attrs.insert(k, v);
    }
    let kind = match attrs.remove("type").as_deref() {
        Some("oci") => ExportKind::Oci,
        Some("tar") => ExportKind::Tar,
        Some("local") => ExportKind::Local,
        Some("image") => ExportKind::Image,
        // buildx's shorthand for type=image,push=true.
        Some("registry") => {
            attrs.insert("push".into(), "true".into());
            ExportKind::Image
        }
        Some(t @ ("docker" | "moby")) => bail!(
            "--output type={t} is not supported: there is no Docker daemon to load into \
             (use type=image,push=true or type=oci)"
        ),
        Some(t) => bail!(
            "--output type={t}: unknown exporter (image, registry, oci, tar and local are supported)"
        ),
        None => bail!("--output {s:?}: missing type= (e.g. type=oci,dest=out.tar)"),
    };
    let dest = attrs.remove("dest");
    let dest = match (&kind, dest.as_deref()) {
        (ExportKind::Image, Some(_)) => bail!("--output type=image takes no dest= (it pushes)"),
        (ExportKind::Image, None) => ExportDest::None,
        (ExportKind::Local, Some(d)) => ExportDest::Dir(PathBuf::from(d)),
        (ExportKind::Local, None) => bail!("--output type=local needs dest=DIR"),
        (_, Some("-")) => ExportDest::Stdout,
        (_, Some(d)) => ExportDest::File(PathBuf::from(d)),
        (_, None) => bail!("--output {s:?}: needs dest=FILE (or dest=- for stdout)"),
    };
    Ok(ExportRequest { kind, dest, attrs })
}

/// buildx's `-t REF` and `--push`: `--push` pushes the image outputs (or adds one), and an
/// image output without `name=` takes the tags.
pub fn apply_tags(outputs: &mut Vec<ExportRequest>, tags: &[String], push: bool) -> Result<()> {
    if push && !outputs.iter().any(|o| o.kind == ExportKind::Image) {
        if tags.is_empty() {
            bail!("--push needs -t REF (or -o type=image,name=REF,push=true)");
        }
        outputs.push(ExportRequest {
            kind: ExportKind::Image,
            dest: ExportDest::None,
            attrs: BTreeMap::new(),
        });
    }
    for o in outputs.iter_mut().filter(|o| o.kind == ExportKind::Image) {
        if push {
            o.attrs.insert("push".into(), "true".into());
        }
        if !tags.is_empty() && o.attrs.get("name").is_none_or(|n| n.is_empty()) {
            o.attrs.insert("name".into(), tags.join(","));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_and_push_make_an_image_output() {
        let tags = vec!["r/a:1".to_string(), "r/a:2".to_string()];
        let mut outs = Vec::new();
        apply_tags(&mut outs, &tags, true).unwrap();
        assert_eq!(outs.len(), 1);
        assert_eq!(outs[0].attrs["name"], "r/a:1,r/a:2");
        assert_eq!(outs[0].attrs["push"], "true");
        let mut outs = vec![output("type=image,name=r/b").unwrap()];
        apply_tags(&mut outs, &tags, true).unwrap();
        assert_eq!((outs.len(), outs[0].attrs["name"].as_str()), (1, "r/b"));
        let mut outs = Vec::new();
        apply_tags(&mut outs, &tags, false).unwrap();
        assert!(outs.is_empty(), "-t alone only builds");
        assert!(apply_tags(&mut Vec::new(), &[], true).is_err());
    }

    #[test]
    fn outputs_parse_both_spellings() {
        let o = output("type=oci,dest=out.tar,name=x").unwrap();
        assert_eq!(o.kind, ExportKind::Oci);
        assert!(matches!(o.dest, ExportDest::File(ref p) if p == &PathBuf::from("out.tar")));
        assert_eq!(o.attrs.get("name").map(String::as_str), Some("x"));
        assert!(matches!(
            output("type=tar,dest=-").unwrap().dest,
            ExportDest::Stdout
        ));
        assert_eq!(output("outdir").unwrap().kind, ExportKind::Local);
        assert!(output("type=local").is_err());
        let img = output("type=image,name=r/x,push=true").unwrap();
        assert_eq!(img.kind, ExportKind::Image);
        assert!(matches!(img.dest, ExportDest::None));
        assert_eq!(img.attrs["push"], "true");
        assert_eq!(
            output("type=registry,name=r/x").unwrap().attrs["push"],
            "true"
        );
        assert!(
            output("type=docker")
                .unwrap_err()
                .to_string()
                .contains("no Docker daemon")
        );
        assert!(output("dest=x").is_err());
    }

    #[test]
    fn key_values_keep_equals_in_values() {
        assert_eq!(key_value("a=b=c", "x").unwrap(), ("a".into(), "b=c".into()));
        assert!(key_value("novalue", "x").is_err());
    }
}
