//! `WWW-Authenticate` challenges and the anonymous bearer-token cache.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One challenge: `Bearer realm="…",service="…",scope="…"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub scheme: String,
    pub params: BTreeMap<String, String>,
}

/// Parses a `WWW-Authenticate` value into its challenges (RFC 7235: `scheme k=v, k="v", …`,
/// several challenges may share one header). Malformed parts are skipped, never a panic.
pub(crate) fn parse_challenges(header: &str) -> Vec<Challenge> {
    let mut out: Vec<Challenge> = Vec::new();
    let mut s = header.trim_start();
    while !s.is_empty() {
        // A token followed by `=` is a parameter of the current challenge; otherwise a scheme.
        let tok_end = s
            .find(|c: char| c == '=' || c == ',' || c.is_whitespace())
            .unwrap_or(s.len());
        let token = &s[..tok_end];
        let after = s[tok_end..].trim_start();
        if let Some(value_part) = after.strip_prefix('=')
            && !token.is_empty()
        {
            let (value, rest) = parse_value(value_part.trim_start());
            if let Some(c) = out.last_mut() {
                c.params.insert(token.to_ascii_lowercase(), value);
            }
            s = rest;
        } else if token.is_empty() {
            // A stray `=`: skip it so the loop always advances.
            let mut chars = s.chars();
            chars.next();
            s = chars.as_str();
        } else {
            let scheme = token.to_ascii_lowercase();
            out.push(Challenge {
                scheme,
                params: BTreeMap::new(),
            });
            s = after;
        }
        s = s.trim_start_matches(|c: char| c == ',' || c.is_whitespace());
    }
    out
}

/// A quoted string (with `\` escapes) or a bare token; returns it and the rest.
fn parse_value(s: &str) -> (String, &str) {
    if let Some(inner) = s.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = inner.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, esc)) = chars.next() {
                        value.push(esc);
                    }
                }
                '"' => return (value, &inner[i + 1..]),
                c => value.push(c),
            }
        }
        (value, "")
    } else {
        let end = s
            .find(|c: char| c == ',' || c.is_whitespace())
            .unwrap_or(s.len());
        (s[..end].to_string(), &s[end..])
    }
}

/// The token endpoint's answer; `access_token` is the OAuth2 spelling of `token`.
#[derive(Debug, serde::Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_in: Option<u64>,
}

/// A registry host and a token scope.
type HostScope = (String, String);

/// Tokens keyed by registry host and scope, dropped a little before they expire.
#[derive(Debug, Default)]
pub(crate) struct TokenCache {
    tokens: Mutex<HashMap<HostScope, (String, Instant)>>,
    /// One token fetch at a time per host and scope: concurrent requests (blobs pushed in
    /// parallel) wait for it and share its token rather than each asking the token server.
    fetching: Mutex<HashMap<HostScope, Arc<tokio::sync::Mutex<()>>>>,
}

impl TokenCache {
    /// The lock to hold while fetching a token for `host` and `scope`.
    pub fn fetch_lock(&self, host: &str, scope: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut f = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
        f.entry((host.to_string(), scope.to_string()))
            .or_default()
            .clone()
    }

    pub fn get(&self, host: &str, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let (token, until) = tokens.get(&(host.to_string(), scope.to_string()))?;
        (Instant::now() < *until).then(|| token.clone())
    }

    pub fn put(&self, host: &str, scope: &str, token: String, expires_in: Option<u64>) {
        // The distribution spec's default lifetime is 60 s; keep a margin for clock and latency.
        let secs = expires_in.unwrap_or(60).clamp(10, 24 * 3600);
        let until = Instant::now() + Duration::from_secs(secs - 5);
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens.insert((host.to_string(), scope.to_string()), (token, until));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_bearer_challenge() {
        let h = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        let c = parse_challenges(h);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].params["realm"], "https://auth.docker.io/token");
        assert_eq!(c[0].params["service"], "registry.docker.io");
        assert_eq!(c[0].params["scope"], "repository:library/busybox:pull");
    }

    #[test]
    fn parses_several_challenges_quotes_and_junk() {
        let c =
            parse_challenges(r#"Basic realm="a, \"b\"", Bearer realm=https://x/t, scope="s1 s2""#);
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].params["realm"], r#"a, "b""#);
        assert_eq!(c[1].scheme, "bearer");
        assert_eq!(c[1].params["realm"], "https://x/t");
        assert_eq!(c[1].params["scope"], "s1 s2");
        for junk in [
            "",
            "=",
            "==,,",
            "Bearer realm=\"unterminated",
            "\"",
            ",Bearer",
        ] {
            let _ = parse_challenges(junk);
        }
    }

    #[test]
    fn token_cache_is_per_host_and_scope() {
        let cache = TokenCache::default();
        cache.put("h", "repository:a:pull", "t1".into(), Some(300));
        assert_eq!(cache.get("h", "repository:a:pull").as_deref(), Some("t1"));
        assert_eq!(cache.get("h", "repository:b:pull"), None);
        assert_eq!(cache.get("other", "repository:a:pull"), None);
    }
}
