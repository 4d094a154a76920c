//! `RUN --mount=…` values: BuildKit's `parseMount`. A value is a CSV list of `key=value` fields
//! and a few bare flags. It is read twice, as BuildKit does: once when the Dockerfile is parsed
//! (without expansion, only to reject a variable in `from=`), and once when the instruction is
//! dispatched, with every value expanded in the stage's environment.

use crate::lint::suggest;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MountType {
    #[default]
    Bind,
    Cache,
    Tmpfs,
    Secret,
    Ssh,
}

impl MountType {
    pub fn as_str(self) -> &'static str {
        match self {
            MountType::Bind => "bind",
            MountType::Cache => "cache",
            MountType::Tmpfs => "tmpfs",
            MountType::Secret => "secret",
            MountType::Ssh => "ssh",
        }
    }
}

const MOUNT_TYPES: [&str; 5] = ["bind", "cache", "tmpfs", "secret", "ssh"];
const SHARING_MODES: [&str; 3] = ["shared", "private", "locked"];
const KEYS: [&str; 19] = [
    "type",
    "from",
    "source",
    "target",
    "readonly",
    "id",
    "sharing",
    "required",
    "size",
    "mode",
    "uid",
    "gid",
    "src",
    "dst",
    "destination",
    "ro",
    "rw",
    "readwrite",
    "env",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sharing {
    /// Not given: shared.
    #[default]
    Unset,
    Shared,
    Private,
    Locked,
}

/// One parsed `--mount`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Mount {
    pub kind: MountType,
    pub from: String,
    pub source: String,
    pub target: String,
    pub readonly: bool,
    pub size_limit: i64,
    /// `id=`: the cache id, or the secret/ssh id.
    pub id: String,
    pub sharing: Sharing,
    pub required: bool,
    /// `env=` of a secret: expose it as this variable instead of (by default) a file.
    pub env: Option<String>,
    pub mode: Option<u64>,
    pub uid: Option<u64>,
    pub gid: Option<u64>,
}

/// Expands one word of a mount value in the stage's environment.
pub type Expander<'a> = &'a mut dyn FnMut(&str) -> Result<String, String>;

/// Parses one `--mount` value. Without an expander (parse time) only the shape is checked;
/// with one (dispatch time) every value is expanded first.
pub fn parse_mount(value: &str, expander: Option<Expander<'_>>) -> Result<Mount, String> {
    let fields = csv_fields(value).map_err(|e| format!("failed to parse csv mounts: {e}"))?;
    let mut expander = expander;
    let mut m = Mount::default();
    let mut ro_auto = true;
    for field in fields {
        let (key, val) = match field.split_once('=') {
            Some((k, v)) => (k.to_lowercase(), Some(v.to_string())),
            None => (field.to_lowercase(), None),
        };
        let Some(val) = val else {
            if expander.is_none() {
                continue;
            }
            match key.as_str() {
                "readonly" | "ro" => {
                    m.readonly = true;
                    ro_auto = false;
                }
                "readwrite" | "rw" => {
                    m.readonly = false;
                    ro_auto = false;
                }
                "required" if matches!(m.kind, MountType::Secret | MountType::Ssh) => {
                    m.required = true;
                }
                "required" => {
                    return Err(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.kind.as_str()
                    ));
                }
                _ => return Err(format!("invalid field '{field}' must be a key=value pair")),
            }
            continue;
        };
        let val = match expander.as_mut() {
            Some(expand) => expand(&val)?,
            None => {
                if key == "from"
                    && let Some(i) = val.find('$')
                    && i != val.len() - 1
                {
                    return Err(format!(
                        "'{key}' doesn't support variable expansion, define alias stage instead"
                    ));
                }
                // The stage a mount reads is needed before dispatch, to order the stages.
                if key == "from" {
                    m.from = val;
                }
                continue;
            }
        };
        let invalid = || format!("invalid value for {key}: {val}");
        match key.as_str() {
            "type" => {
                m.kind = match val.to_lowercase().as_str() {
                    "bind" => MountType::Bind,
                    "cache" => MountType::Cache,
                    "tmpfs" => MountType::Tmpfs,
                    "secret" => MountType::Secret,
                    "ssh" => MountType::Ssh,
                    _ => {
                        return Err(with_suggestion(
                            format!("unsupported mount type {val:?}"),
                            &val.to_lowercase(),
                            &MOUNT_TYPES,
                        ));
                    }
                }
            }
            "from" => m.from = val,
            "source" | "src" => m.source = val,
            "target" | "dst" | "destination" => m.target = val,
            "readonly" | "ro" => {
                m.readonly = parse_bool(&val).ok_or_else(invalid)?;
                ro_auto = false;
            }
            "readwrite" | "rw" => {
                m.readonly = !parse_bool(&val).ok_or_else(invalid)?;
                ro_auto = false;
            }
            "required" => {
                if !matches!(m.kind, MountType::Secret | MountType::Ssh) {
                    return Err(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.kind.as_str()
                    ));
                }
                m.required = parse_bool(&val).ok_or_else(invalid)?;
            }
            "size" => {
                if m.kind != MountType::Tmpfs {
                    return Err(format!(
                        "unexpected key '{key}' for mount type '{}'",
                        m.kind.as_str()
                    ));
                }
                m.size_limit = ram_in_bytes(&val).ok_or_else(invalid)?;
            }
            "id" => m.id = val,
            "sharing" => {
                m.sharing = match val.to_lowercase().as_str() {
                    "shared" => Sharing::Shared,
                    "private" => Sharing::Private,
                    "locked" => Sharing::Locked,
                    _ => {
                        return Err(with_suggestion(
                            format!("unsupported sharing value {val:?}"),
                            &val.to_lowercase(),
                            &SHARING_MODES,
                        ));
                    }
                }
            }
            "mode" => {
                m.mode = Some(
                    u32::from_str_radix(&val, 8)
                        .map_err(|_| format!("invalid value {val} for mode"))?
                        .into(),
                )
            }
            "uid" => {
                m.uid = Some(
                    val.parse::<u32>()
                        .map_err(|_| format!("invalid value {val} for uid"))?
                        .into(),
                )
            }
            "gid" => {
                m.gid = Some(
                    val.parse::<u32>()
                        .map_err(|_| format!("invalid value {val} for gid"))?
                        .into(),
                )
            }
            "env" => m.env = Some(val),
            _ => {
                return Err(with_suggestion(
                    format!("unexpected key '{key}' in '{field}'"),
                    &key,
                    &KEYS,
                ));
            }
        }
    }

    if !matches!(
        m.kind,
        MountType::Secret | MountType::Ssh | MountType::Cache
    ) {
        for (name, set) in [
            ("mode", m.mode.is_some()),
            ("uid", m.uid.is_some()),
            ("gid", m.gid.is_some()),
        ] {
            if set {
                return Err(format!(
                    "{name} not allowed for {:?} type mounts",
                    m.kind.as_str()
                ));
            }
        }
    }
    if ro_auto {
        m.readonly = !matches!(m.kind, MountType::Cache | MountType::Tmpfs);
    }
    if m.kind == MountType::Secret {
        if !m.from.is_empty() {
            return Err("secret mount should not have a from".into());
        }
        if m.sharing != Sharing::Unset {
            return Err("secret mount should not define sharing".into());
        }
        if m.source.is_empty() && m.target.is_empty() && m.id.is_empty() {
            return Err("invalid secret mount. one of source, target required".into());
        }
        if !m.source.is_empty() && !m.id.is_empty() {
            return Err("both source and id can't be set".into());
        }
    }
    if m.sharing != Sharing::Unset && m.kind != MountType::Cache {
        return Err(format!(
            "invalid cache sharing set for {} mount",
            m.kind.as_str()
        ));
    }
    Ok(m)
}

fn with_suggestion(message: String, value: &str, options: &[&str]) -> String {
    match suggest(value, options.iter().copied()) {
        Some(s) => format!("{message} (did you mean {s}?)"),
        None => message,
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// docker/go-units `RAMInBytes`: a number with an optional binary unit (`64k`, `1.5GiB`).
fn ram_in_bytes(s: &str) -> Option<i64> {
    let s = s.trim_end();
    let digits_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, mut unit) = s.split_at(digits_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    let size: f64 = num.parse().ok()?;
    unit = unit.strip_prefix(' ').unwrap_or(unit);
    let lower = unit.to_lowercase();
    let mut rest = lower.as_str();
    let mult: f64 = match rest.chars().next() {
        Some('k') => 1024f64,
        Some('m') => 1024f64.powi(2),
        Some('g') => 1024f64.powi(3),
        Some('t') => 1024f64.powi(4),
        Some('p') => 1024f64.powi(5),
        _ => 1.0,
    };
    if mult != 1.0 {
        rest = &rest[1..];
    }
    rest = rest.strip_prefix('i').unwrap_or(rest);
    rest = rest.strip_prefix('b').unwrap_or(rest);
    if !rest.is_empty() {
        return None;
    }
    Some((size * mult) as i64)
}

/// One CSV record (Go's encoding/csv rules as go-csvvalue applies them): fields split on
/// commas, a field starting with `"` is quoted and `""` inside it is a quote.
fn csv_fields(s: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let mut field = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    None => return Err("extraneous or missing \" in quoted-field".into()),
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                }
            }
            match chars.next() {
                None => {
                    out.push(field);
                    return Ok(out);
                }
                Some(',') => out.push(field),
                Some(_) => return Err("extraneous or missing \" in quoted-field".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        out.push(field);
                        return Ok(out);
                    }
                    Some(',') => break,
                    Some('"') => return Err("bare \" in non-quoted-field".into()),
                    Some(c) => field.push(c),
                }
            }
            out.push(field);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<Mount, String> {
        let mut id = |w: &str| Ok(w.to_string());
        parse_mount(v, Some(&mut id))
    }

    #[test]
    fn defaults_per_type() {
        let m = parse("target=/ctx").unwrap();
        assert_eq!((m.kind, m.readonly), (MountType::Bind, true));
        let m = parse("type=cache,target=/c").unwrap();
        assert_eq!((m.kind, m.readonly), (MountType::Cache, false));
        let m = parse("type=tmpfs,target=/t,size=1m").unwrap();
        assert_eq!((m.readonly, m.size_limit), (false, 1 << 20));
        let m = parse("type=bind,source=data,target=/rw,rw").unwrap();
        assert!(!m.readonly);
        let m = parse("type=secret,id=tok,required,mode=0400,uid=5").unwrap();
        assert_eq!(
            (m.required, m.mode, m.uid, m.gid),
            (true, Some(0o400), Some(5), None)
        );
        let m = parse("type=cache,id=x,sharing=LOCKED,target=/c").unwrap();
        assert_eq!(m.sharing, Sharing::Locked);
        let m = parse(r#""type=bind","target=/a,b""#).unwrap();
        assert_eq!(m.target, "/a,b");
    }

    #[test]
    fn errors_match_buildkit() {
        let cases = [
            (
                "type=bnd,target=/x",
                "unsupported mount type \"bnd\" (did you mean bind?)",
            ),
            (
                "type=bind,targt=/x",
                "unexpected key 'targt' in 'targt=/x' (did you mean target?)",
            ),
            (
                "type=bind,uid=1,target=/x",
                "uid not allowed for \"bind\" type mounts",
            ),
            (
                "type=tmpfs,mode=0700,target=/x",
                "mode not allowed for \"tmpfs\" type mounts",
            ),
            (
                "type=bind,size=1m,target=/x",
                "unexpected key 'size' for mount type 'bind'",
            ),
            (
                "type=bind,required,target=/x",
                "unexpected key 'required' for mount type 'bind'",
            ),
            (
                "type=cache,sharing=lockd,target=/x",
                "unsupported sharing value \"lockd\" (did you mean locked?)",
            ),
            (
                "type=bind,sharing=locked,target=/x",
                "invalid cache sharing set for bind mount",
            ),
            (
                "type=secret",
                "invalid secret mount. one of source, target required",
            ),
            (
                "type=secret,id=a,source=b",
                "both source and id can't be set",
            ),
            (
                "type=secret,id=a,from=x",
                "secret mount should not have a from",
            ),
            ("type=cache,mode=9,target=/x", "invalid value 9 for mode"),
            (
                "type=bind,ro=maybe,target=/x",
                "invalid value for ro: maybe",
            ),
            (
                "type=bind,bogus,target=/x",
                "invalid field 'bogus' must be a key=value pair",
            ),
            (
                "type=tmpfs,size=lots,target=/x",
                "invalid value for size: lots",
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parse(input).unwrap_err(), want, "{input}");
        }
    }

    #[test]
    fn parse_time_checks_only_from() {
        let m = parse_mount("type=bogus,from=stage$,target=/x", None).unwrap();
        assert_eq!(
            m,
            Mount {
                readonly: true,
                from: "stage$".into(),
                ..Default::default()
            }
        );
        assert_eq!(
            parse_mount("from=${STAGE}x", None).unwrap_err(),
            "'from' doesn't support variable expansion, define alias stage instead"
        );
    }

    #[test]
    fn sizes() {
        for (s, n) in [
            ("100", 100),
            ("1k", 1024),
            ("1m", 1 << 20),
            ("1.5KiB", 1536),
            ("2 GB", 2 << 30),
        ] {
            assert_eq!(ram_in_bytes(s), Some(n), "{s}");
        }
        for s in ["", "k", "1x", "1.k", "-1"] {
            assert_eq!(ram_in_bytes(s), None, "{s}");
        }
    }
}
