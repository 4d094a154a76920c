//! Small pieces of BuildKit's behaviour the converter leans on: the LLB state's env list,
//! Go-style path cleaning, image reference normalisation, Go `%q` / `%v` formatting.

use crate::shell::EnvGetter;

/// The env of an LLB state. Like BuildKit's `llb.EnvList`, re-defining a key moves it to the
/// end, which decides the order of `Meta.env` in exec ops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct StateEnv(pub Vec<(String, String)>);

impl StateEnv {
    pub fn add_or_replace(&mut self, k: &str, v: &str) {
        self.0.retain(|(key, _)| key != k);
        self.0.push((k.to_string(), v.to_string()));
    }
    pub fn to_array(&self) -> Vec<String> {
        self.0.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

impl EnvGetter for StateEnv {
    fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
    fn keys(&self) -> Vec<String> {
        self.0.iter().map(|(k, _)| k.clone()).collect()
    }
}

/// An env that has nothing set.
pub(crate) struct NoEnv;

impl EnvGetter for NoEnv {
    fn get(&self, _: &str) -> Option<String> {
        None
    }
    fn keys(&self) -> Vec<String> {
        Vec::new()
    }
}

/// Go's `path.Clean` (one implementation, shared with the `.dockerignore` reader).
pub(crate) use kiln_pattern::clean_path as clean;

/// Go's `path.Join`.
pub(crate) fn join(parts: &[&str]) -> String {
    let s: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    if s.is_empty() {
        return String::new();
    }
    clean(&s.join("/"))
}

/// BuildKit's `system.NormalizePath` for Linux.
pub(crate) fn normalize_path(parent: &str, p: &str, keep_slash: bool) -> String {
    let parent = if parent.is_empty() { "/" } else { parent };
    let mut out = if p.starts_with('/') {
        clean(p)
    } else {
        join(&[parent, p])
    };
    if keep_slash {
        if p.ends_with('/') && !out.ends_with('/') {
            out.push('/');
        } else if p.ends_with("/.") {
            if out != "/" {
                out.push('/');
            }
            out.push('.');
        }
    }
    out
}

/// The reference as BuildKit's frontend names it: `docker.io/library/` added to short names
/// and `:latest` when neither tag nor digest is given.
pub(crate) fn normalize_ref(r: &str) -> Result<String, String> {
    if r.is_empty() || r.chars().any(char::is_whitespace) {
        return Err(format!("invalid reference format: {r:?}"));
    }
    let (name_part, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    let last_slash = name_part.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match name_part[last_slash..].rfind(':') {
        Some(i) => (
            &name_part[..last_slash + i],
            Some(&name_part[last_slash + i + 1..]),
        ),
        None => (name_part, None),
    };
    let first = name.split('/').next().unwrap_or_default();
    let has_domain =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let mut full = if has_domain {
        name.to_string()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    if let Some(t) = tag {
        full = format!("{full}:{t}");
    }
    match digest {
        Some(d) => Ok(format!("{full}@{d}")),
        None if tag.is_none() => Ok(format!("{full}:latest")),
        None => Ok(full),
    }
}

/// Go's `strconv.Quote`, for history lines written with `%q`.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `%q` of a `[]string`: `["a" "b"]`.
pub(crate) fn go_quote_list(v: &[String]) -> String {
    let items: Vec<String> = v.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", items.join(" "))
}

/// Go's `time.Duration.String()`.
pub(crate) fn go_duration(ns: i64) -> String {
    if ns == 0 {
        return "0s".into();
    }
    let neg = ns < 0;
    let u = ns.unsigned_abs();
    let s = if u < 1_000_000_000 {
        let (unit, div) = if u < 1_000 {
            ("ns", 1)
        } else if u < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        format!("{}{unit}", frac(u, div))
    } else {
        let h = u / 3_600_000_000_000;
        let m = (u / 60_000_000_000) % 60;
        let sec = frac(u % 60_000_000_000, 1_000_000_000);
        match (h, m) {
            (0, 0) => format!("{sec}s"),
            (0, m) => format!("{m}m{sec}s"),
            (h, m) => format!("{h}h{m}m{sec}s"),
        }
    };
    if neg { format!("-{s}") } else { s }
}

fn frac(v: u64, div: u64) -> String {
    let whole = v / div;
    let rem = v % div;
    if rem == 0 {
        return whole.to_string();
    }
    let width = div.to_string().len() - 1;
    let digits = format!("{rem:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            normalize_path("/opt/greeter", "./bin/", true),
            "/opt/greeter/bin/"
        );
        assert_eq!(normalize_path("/a", "..", false), "/");
        assert_eq!(normalize_path("/", "src/", false), "/src");
        assert_eq!(normalize_path("/w", ".", true), "/w");
        assert_eq!(join(&[".", "/src"]), "src");
    }

    #[test]
    fn refs() {
        assert_eq!(
            normalize_ref("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            normalize_ref("localhost:5000/busybox").unwrap(),
            "localhost:5000/busybox:latest"
        );
        assert_eq!(normalize_ref("a/b:1").unwrap(), "docker.io/a/b:1");
    }

    #[test]
    fn go_formats() {
        assert_eq!(
            go_quote_list(&["cat".into(), "/a".into()]),
            "[\"cat\" \"/a\"]"
        );
        assert_eq!(go_duration(90_000_000_000), "1m30s");
        assert_eq!(go_duration(5_000_000_000), "5s");
        assert_eq!(go_duration(1_500_000), "1.5ms");
    }

    #[test]
    fn env_redefinition_moves_to_end() {
        let mut e = StateEnv::default();
        e.add_or_replace("A", "1");
        e.add_or_replace("B", "2");
        e.add_or_replace("A", "3");
        assert_eq!(e.to_array(), vec!["B=2", "A=3"]);
    }
}
