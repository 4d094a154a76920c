//! Registry credentials from Docker's `config.json` (`$DOCKER_CONFIG`, default `~/.docker`):
//! `auths` (base64 `auth`, username/password, `identitytoken`), `credsStore` and `credHelpers`
//! (`docker-credential-NAME get`, the server on stdin, JSON on stdout), as docker/cli reads them.
//!
//! Invariant: a secret is held only in [`Credentials`], whose Debug prints no secret, and no
//! error built here quotes a helper's output or a config value.

use base64::Engine as _;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

/// Docker Hub's key in config.json.
const HUB_KEY: &str = "https://index.docker.io/v1/";
const MAX_CONFIG: u64 = 4 * 1024 * 1024;
const MAX_HELPER_OUTPUT: usize = 64 * 1024;

#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Empty for an identity (refresh) token.
    pub username: String,
    /// A password, or the identity token when `username` is empty.
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    identitytoken: Option<String>,
}

#[derive(Deserialize)]
struct HelperAnswer {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Where credentials come from; looked up once per registry host and kept for the process.
#[derive(Debug)]
pub struct CredentialStore {
    dir: Option<PathBuf>,
    cache: Mutex<HashMap<String, Option<Credentials>>>,
    /// A reason the config could not be read, reported once per lookup (never its content).
    warning: Mutex<Option<String>>,
}

impl CredentialStore {
    /// `$DOCKER_CONFIG`, else `~/.docker`.
    pub fn from_env() -> Self {
        let dir = std::env::var_os("DOCKER_CONFIG")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker")));
        Self::in_dir(dir)
    }

    /// Reads `dir/config.json` (none: no credentials).
    pub fn in_dir(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            cache: Mutex::new(HashMap::new()),
            warning: Mutex::new(None),
        }
    }

    /// The credentials for a registry host (`docker.io` for Docker Hub), if any.
    pub fn get(&self, host: &str) -> Option<Credentials> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(host) {
            return c.clone();
        }
        let found = match self.lookup(host) {
            Ok(c) => c,
            Err(reason) => {
                *self.warning.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                None
            }
        };
        cache.insert(host.to_string(), found.clone());
        found
    }

    /// Why the last lookup found nothing when it should have (for error messages).
    pub fn warning(&self) -> Option<String> {
        self.warning
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn lookup(&self, host: &str) -> Result<Option<Credentials>, String> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let path = dir.join("config.json");
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(format!("reading {}: {e}", path.display())),
        };
        let mut text = Vec::new();
        use std::io::Read as _;
        file.take(MAX_CONFIG)
            .read_to_end(&mut text)
            .map_err(|e| format!("reading {}: {e}", path.display()))?;
        let config: ConfigFile = serde_json::from_slice(&text).map_err(|e| {
            // serde_json's message names a line and column, not the content.
            format!("{} is not valid JSON: {e}", path.display())
        })?;
        let key = if host == "docker.io" || host == "registry-1.docker.io" {
            HUB_KEY
        } else {
            host
        };
        let helper = config
            .cred_helpers
            .get(key)
            .or(config.creds_store.as_ref())
            .filter(|h| !h.is_empty());
        if let Some(helper) = helper {
            return run_helper(helper, key);
        }
        let entry = config.auths.get(key).or_else(|| {
            config
                .auths
                .iter()
                .find(|(k, _)| hostname_of(k) == key || hostname_of(k) == hostname_of(key))
                .map(|(_, v)| v)
        });
        entry
            .map(|e| decode_entry(e, &path.display().to_string()))
            .transpose()
            .map(Option::flatten)
    }
}

/// docker/cli's ConvertToHostname: drop the scheme and any path.
fn hostname_of(key: &str) -> &str {
    let s = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    s.split('/').next().unwrap_or(s)
}

fn decode_entry(e: &AuthEntry, origin: &str) -> Result<Option<Credentials>, String> {
    if let Some(token) = e.identitytoken.as_ref().filter(|t| !t.is_empty()) {
        return Ok(Some(Credentials {
            username: String::new(),
            secret: token.clone(),
        }));
    }
    if let Some(auth) = e.auth.as_ref().filter(|a| !a.is_empty()) {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .map_err(|_| format!("{origin}: an `auth` entry is not base64"))?;
        let text = String::from_utf8(raw)
            .map_err(|_| format!("{origin}: an `auth` entry is not UTF-8"))?;
        let (user, pass) = text
            .split_once(':')
            .ok_or_else(|| format!("{origin}: an `auth` entry is not user:password"))?;
        return Ok(Some(Credentials {
            username: user.to_string(),
            secret: pass.to_string(),
        }));
    }
    match (&e.username, &e.password) {
        (Some(u), Some(p)) if !u.is_empty() => Ok(Some(Credentials {
            username: u.clone(),
            secret: p.clone(),
        })),
        _ => Ok(None),
    }
}

/// Runs `docker-credential-NAME get` with the server on stdin. "Not found" is no credentials;
/// any other failure is reported without the helper's output (it may echo secrets).
fn run_helper(name: &str, server: &str) -> Result<Option<Credentials>, String> {
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!("credential helper name {name:?} is not valid"));
    }
    let bin = format!("docker-credential-{name}");
    let mut child = std::process::Command::new(&bin)
        .arg("get")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("running {bin}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("running {bin}: {e}"))?;
    if !out.status.success() {
        let text = String::from_utf8_lossy(&out.stdout);
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(format!("{bin} get failed ({})", out.status));
    }
    if out.stdout.len() > MAX_HELPER_OUTPUT {
        return Err(format!("{bin} get: answer too large"));
    }
    let answer: HelperAnswer = serde_json::from_slice(&out.stdout)
        .map_err(|_| format!("{bin} get: the answer is not the expected JSON"))?;
    if answer.secret.is_empty() {
        return Ok(None);
    }
    // docker/cli: the username `<token>` marks an identity token.
    let username = if answer.username == "<token>" {
        String::new()
    } else {
        answer.username
    };
    Ok(Some(Credentials {
        username,
        secret: answer.secret,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with(json: &str) -> (tempfile::TempDir, CredentialStore) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.json"), json).unwrap();
        let s = CredentialStore::in_dir(Some(dir.path().to_path_buf()));
        (dir, s)
    }

    #[test]
    fn reads_auths_in_every_spelling() {
        let b64 = base64::engine::general_purpose::STANDARD.encode("alice:s3cret:x");
        let (_d, s) = store_with(&format!(
            r#"{{"auths":{{
                "reg.test:5000":{{"auth":"{b64}"}},
                "https://other.test/v1/":{{"username":"bob","password":"pw"}},
                "https://index.docker.io/v1/":{{"identitytoken":"idt"}}
            }}}}"#
        ));
        let c = s.get("reg.test:5000").unwrap();
        assert_eq!(
            (c.username.as_str(), c.secret.as_str()),
            ("alice", "s3cret:x")
        );
        assert_eq!(s.get("other.test").unwrap().username, "bob");
        let hub = s.get("docker.io").unwrap();
        assert_eq!((hub.username.as_str(), hub.secret.as_str()), ("", "idt"));
        assert!(s.get("nothere.test").is_none());
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn broken_config_is_a_warning_without_content() {
        let (_d, s) = store_with(r#"{"auths":{"r":{"auth":"!!notbase64-s3cret"}}}"#);
        assert!(s.get("r").is_none());
        let w = s.warning().unwrap();
        assert!(w.contains("not base64") && !w.contains("s3cret"), "{w}");
        let missing = CredentialStore::in_dir(Some("/nonexistent-kiln".into()));
        assert!(missing.get("r").is_none() && missing.warning().is_none());
    }
}
