//! Registries a test starts itself (Debian's docker-registry with htpasswd basic auth, on plain
//! loopback HTTP or TLS), docker-credential helpers, skopeo, and checks that a secret was not
//! written anywhere.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The user name every test registry and credential helper uses.
pub const AUTH_USER: &str = "kiln";

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `skopeo ARGS…`; panics with skopeo's stderr unless it succeeds; returns its stdout.
#[track_caller]
pub fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "skopeo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// How a test registry is served.
#[derive(Default)]
pub struct RegistryOptions<'a> {
    /// htpasswd basic auth for [`AUTH_USER`] with this password (bcrypt, made by python's crypt).
    pub password: Option<&'a str>,
    /// TLS with this (certificate chain, key) pair, PEM files; plain HTTP otherwise.
    pub tls: Option<(&'a Path, &'a Path)>,
}

/// A docker-registry on `127.0.0.1:PORT`, stopped when dropped. Its log (access log included)
/// is `log`.
pub struct TestRegistry {
    pub port: u16,
    pub log: PathBuf,
    _child: Killed,
}

impl TestRegistry {
    /// Starts docker-registry with its storage, config and log under `dir`.
    pub fn start(dir: &Path, opts: RegistryOptions<'_>) -> TestRegistry {
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n",
            dir.join("data").display()
        );
        if let Some(password) = opts.password {
            let hash = Command::new("python3")
                .args([
                    "-W",
                    "ignore",
                    "-c",
                    "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
                    password,
                ])
                .output()
                .unwrap();
            assert!(hash.status.success(), "python3 crypt (bcrypt) is needed");
            let hash = String::from_utf8(hash.stdout).unwrap();
            assert!(hash.starts_with("$2"), "{hash}");
            std::fs::write(dir.join("htpasswd"), format!("{AUTH_USER}:{}", hash.trim())).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: kiln-test\n    path: {}\n",
                dir.join("htpasswd").display()
            ));
        }
        let port = super::free_port();
        config.push_str(&format!("http:\n  addr: 127.0.0.1:{port}\n"));
        if let Some((cert, key)) = opts.tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                cert.display(),
                key.display()
            ));
        }
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = dir.join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("starting docker-registry");
        let child = Killed(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "registry did not start: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        TestRegistry {
            port,
            log,
            _child: child,
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Writes `dir/docker-credential-NAME`, a credential helper that answers `get` with
/// [`AUTH_USER`] and `secret` for any server, and appends each server it is asked about to
/// `dir/NAME.log`. Returns that log's path.
pub fn write_credential_helper(dir: &Path, name: &str, secret: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let helper = dir.join(format!("docker-credential-{name}"));
    let log = dir.join(format!("{name}.log"));
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 1\nread server\necho \"$server\" >> '{}'\n\
             printf '{{\"ServerURL\":\"%s\",\"Username\":\"{AUTH_USER}\",\"Secret\":\"{secret}\"}}' \"$server\"\n",
            log.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    log
}

/// `$PATH` with `dir` in front.
pub fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

pub fn contains_bytes(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The files under `dir` (symlinks not followed) whose bytes contain `needle`.
pub fn tree_contains(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return hits;
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            hits.extend(tree_contains(&path, needle));
        } else if meta.is_file() && std::fs::read(&path).is_ok_and(|b| contains_bytes(&b, needle)) {
            hits.push(path.display().to_string());
        }
    }
    hits
}

/// Standard base64, as HTTP basic credentials and Docker's config.json spell them.
pub fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}
