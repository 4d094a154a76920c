//! Per-registry settings in BuildKit's `[registry."host"]` TOML shape (`mirrors`, `http`,
//! `insecure`, `ca`, `keypair`), and the endpoints and HTTP clients they make.

use crate::RegistryError;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Kiln's configuration file; only the `registry` table is read here.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Config {
    #[serde(default)]
    pub registry: BTreeMap<String, HostConfig>,
}

/// One `[registry."host"]` table, as buildkitd.toml spells it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Pull-only mirrors tried before the registry itself: `host[:port][/path]`.
    #[serde(default)]
    pub mirrors: Vec<String>,
    /// Plain HTTP (default: only for localhost and loopback addresses).
    #[serde(default)]
    pub http: Option<bool>,
    /// HTTPS without certificate verification, falling back to HTTP where HTTP is allowed.
    #[serde(default)]
    pub insecure: Option<bool>,
    /// Extra CA certificates (PEM files), added to the system's.
    #[serde(default)]
    pub ca: Vec<PathBuf>,
    /// TLS client certificates.
    #[serde(default)]
    pub keypair: Vec<KeyPair>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPair {
    pub key: PathBuf,
    pub cert: PathBuf,
}

/// Why a configuration could not be used; names the file or host and never a key's content.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("registry {host:?}: {message}")]
    Host { host: String, message: String },
}

impl Config {
    /// Parses Kiln's TOML; `origin` names the file in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string().trim().to_string(),
        })
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// The default file: `/etc/kiln/kiln.toml` for root, else `$XDG_CONFIG_HOME/kiln/kiln.toml`
    /// (`~/.config/kiln/kiln.toml`); a missing file is an empty configuration.
    pub fn load_default() -> Result<Config, ConfigError> {
        match default_path() {
            Some(p) if p.is_file() => Self::load(&p),
            _ => Ok(Config::default()),
        }
    }

    pub(crate) fn host(&self, host: &str) -> Option<&HostConfig> {
        self.registry.get(host)
    }
}

pub fn default_path() -> Option<PathBuf> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return Some(PathBuf::from("/etc/kiln/kiln.toml"));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("kiln").join("kiln.toml"))
}

/// Where requests for one registry go, in order: mirrors (pull only), then the registry.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port]/v2` (a mirror may have another path).
    pub base: String,
    pub http: reqwest::Client,
    pub mirror: bool,
}

/// Builds one reqwest client with a host's TLS settings.
pub(crate) fn http_client(
    host: &str,
    config: Option<&HostConfig>,
    insecure: bool,
) -> Result<reqwest::Client, RegistryError> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        // Registries redirect blob GETs to storage; reqwest drops Authorization across hosts.
        .redirect(reqwest::redirect::Policy::limited(8))
        .user_agent(concat!("kiln/", env!("CARGO_PKG_VERSION")))
        // `localhost` is always the loopback interface (as Docker assumes when it picks plain
        // http for it); skipping the system resolver saves milliseconds on every build.
        .resolve_to_addrs(
            "localhost",
            &[
                std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
                std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, 0)),
            ],
        );
    let bad = |message: String| RegistryError::Config {
        source: ConfigError::Host {
            host: host.to_string(),
            message,
        },
    };
    if let Some(c) = config {
        for ca in &c.ca {
            let pem = std::fs::read(ca).map_err(|e| bad(format!("ca {}: {e}", ca.display())))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| bad(format!("ca {}: {e}", ca.display())))?;
            b = b.tls_certs_merge(certs);
        }
        if let Some(kp) = c.keypair.first() {
            let mut pem = std::fs::read(&kp.cert)
                .map_err(|e| bad(format!("keypair cert {}: {e}", kp.cert.display())))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(&kp.key)
                    .map_err(|e| bad(format!("keypair key {}: {e}", kp.key.display())))?,
            );
            // The error names the files, never their content.
            let id = reqwest::Identity::from_pem(&pem).map_err(|_| {
                bad(format!(
                    "keypair {} / {}: not a PEM certificate and private key",
                    kp.cert.display(),
                    kp.key.display()
                ))
            })?;
            b = b.identity(id);
        }
    }
    if insecure {
        b = b.tls_danger_accept_invalid_certs(true);
    }
    b.build().map_err(RegistryError::Client)
}

/// `host[:port][/path]` of a mirror, as BuildKit reads it (a scheme prefix is allowed).
pub(crate) fn split_mirror(raw: &str) -> (String, String) {
    let s = raw
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    match s.split_once('/') {
        Some((host, path)) => {
            let path = format!("/{path}");
            let path = if path.ends_with("/v2") {
                path
            } else {
                format!("{path}/v2")
            };
            (host.to_string(), path)
        }
        None => (s.to_string(), "/v2".to_string()),
    }
}

/// The schemes to try for `host`, BuildKit's rules: `insecure` is HTTPS without verification
/// with a fallback to HTTP when HTTP is allowed; `http` (default: localhost) is plain HTTP.
/// One departure: a localhost registry whose table names a `ca` or `keypair` is HTTPS unless
/// `http = true` says otherwise (BuildKit would speak plain HTTP to it and ignore them).
pub(crate) fn schemes(
    host: &str,
    config: Option<&HostConfig>,
    insecure: bool,
) -> Vec<&'static str> {
    let tls_material = config.is_some_and(|c| !c.ca.is_empty() || !c.keypair.is_empty());
    let plain = match config.and_then(|c| c.http) {
        Some(v) => v,
        None => is_localhost(host) && !tls_material,
    };
    let insecure = insecure || config.and_then(|c| c.insecure).unwrap_or(false);
    match (insecure, plain) {
        (true, true) => vec!["https", "http"],
        (true, false) => vec!["https"],
        (false, true) => vec!["http"],
        (false, false) => vec!["https"],
    }
}

/// containerd's MatchLocalhost: `localhost`, `127.x`, `::1`, with any port.
pub(crate) fn is_localhost(host: &str) -> bool {
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, p)| {
            if p.chars().all(|c| c.is_ascii_digit()) && !h.contains(':') {
                h
            } else {
                host
            }
        })
    };
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_buildkit_registry_tables() {
        let c = Config::parse(
            r#"
[registry."docker.io"]
mirrors = ["mirror.example:5000", "https://m2.example/prefix"]
[registry."reg.test:5000"]
http = true
insecure = true
ca = ["/etc/ca.pem"]
[[registry."reg.test:5000".keypair]]
key = "/k.pem"
cert = "/c.pem"
"#,
            "kiln.toml",
        )
        .unwrap();
        assert_eq!(c.registry["docker.io"].mirrors.len(), 2);
        let r = &c.registry["reg.test:5000"];
        assert_eq!(r.http, Some(true));
        assert_eq!(r.keypair[0].cert, PathBuf::from("/c.pem"));
        let e = Config::parse("[registry.\"x\"]\nhttps = 1\n", "k.toml").unwrap_err();
        assert!(e.to_string().starts_with("k.toml: "), "{e}");
    }

    #[test]
    fn schemes_follow_buildkit() {
        let http = HostConfig {
            http: Some(true),
            ..Default::default()
        };
        assert_eq!(schemes("localhost:5000", None, false), ["http"]);
        assert_eq!(schemes("127.0.0.1:5000", None, true), ["https", "http"]);
        assert_eq!(schemes("reg.test", None, false), ["https"]);
        assert_eq!(schemes("reg.test", None, true), ["https"]);
        assert_eq!(schemes("reg.test", Some(&http), false), ["http"]);
        let ca = HostConfig {
            ca: vec!["/ca.pem".into()],
            ..Default::default()
        };
        assert_eq!(schemes("127.0.0.1:5000", Some(&ca), false), ["https"]);
        let ca_http = HostConfig {
            http: Some(true),
            ..ca.clone()
        };
        assert_eq!(schemes("127.0.0.1:5000", Some(&ca_http), false), ["http"]);
        let empty = HostConfig::default();
        assert_eq!(schemes("localhost:5000", Some(&empty), false), ["http"]);
        assert_eq!(
            split_mirror("m.example:5000"),
            ("m.example:5000".into(), "/v2".into())
        );
        assert_eq!(
            split_mirror("https://m.example/p/"),
            ("m.example".into(), "/p/v2".into())
        );
        assert!(is_localhost("[::1]:5000"));
        assert!(!is_localhost("example.com:5000"));
    }
}
