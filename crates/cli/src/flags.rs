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
        Some(t @ ("image" | "docker" | "registry")) => {
            bail!("--output type={t} is not supported yet (oci, tar and local are)")
        }
        Some(t) => bail!("--output type={t}: unknown exporter (oci, tar and local are supported)"),
        None => bail!("--output {s:?}: missing type= (e.g. type=oci,dest=out.tar)"),
    };
    let dest = attrs.remove("dest");
    let dest = match (&kind, dest.as_deref()) {
        (ExportKind::Local, Some(d)) => ExportDest::Dir(PathBuf::from(d)),
        (ExportKind::Local, None) => bail!("--output type=local needs dest=DIR"),
        (_, Some("-")) => ExportDest::Stdout,
        (_, Some(d)) => ExportDest::File(PathBuf::from(d)),
        (_, None) => bail!("--output {s:?}: needs dest=FILE (or dest=- for stdout)"),
    };
    Ok(ExportRequest { kind, dest, attrs })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(
            output("type=image,name=x")
                .unwrap_err()
                .to_string()
                .contains("not supported yet")
        );
        assert!(output("dest=x").is_err());
    }

    #[test]
    fn key_values_keep_equals_in_values() {
        assert_eq!(key_value("a=b=c", "x").unwrap(), ("a".into(), "b=c".into()));
        assert!(key_value("novalue", "x").is_err());
    }
}
