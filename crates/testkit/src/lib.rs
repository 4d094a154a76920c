//! Test fixtures, made offline by the suite itself: a busybox base image built from Debian's
//! busybox-static, a Debian `docker-registry` on a free loopback port holding it, and a runtime
//! wrapper that logs every call so tests can count what ran.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The repository's root (the workspace).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The conformance cases shipped with the repository.
pub fn cases_dir() -> PathBuf {
    repo_root().join("conformance/kiln-cases")
}

/// The digest BuildKit's cases were made against; mkbase.py is deterministic.
pub const BUSYBOX_DIGEST: &str =
    "sha256:701b50c233765379725136673b7d7f955ed8a6f5c9ee8b845dde721dec0a8dc8";

/// Writes the busybox base image (OCI layout) into `dir` and returns its manifest digest.
pub fn busybox_layout(dir: &Path) -> Result<String, String> {
    let script = repo_root().join("conformance/tools/mkbase.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(dir)
        .arg("latest")
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    if !out.status.success() {
        return Err(format!(
            "mkbase.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .find(|w| w.starts_with("sha256:"))
        .map(str::to_string)
        .ok_or_else(|| format!("mkbase.py printed no digest: {text}"))
}

/// A Debian `docker-registry` on a free loopback port, stopped on drop.
pub struct Registry {
    pub port: u16,
    child: Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Result<Registry, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let port = free_port()?;
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
                dir.path().join("data").display()
            ),
        )
        .map_err(|e| e.to_string())?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| {
                format!("starting docker-registry (apt-get install docker-registry): {e}")
            })?;
        let registry = Registry {
            port,
            child,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err("docker-registry did not start listening within 10s".into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(registry)
    }

    /// `localhost:PORT`, the host part of image references.
    pub fn host(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// Pushes an OCI layout's `latest` to `NAME` in this registry with skopeo.
    pub fn push_layout(&self, layout: &Path, name: &str) -> Result<(), String> {
        let out = Command::new("skopeo")
            .args(["copy", "-q", "--dest-tls-verify=false"])
            .arg(format!("oci:{}:latest", layout.display()))
            .arg(format!("docker://{}/{name}", self.host()))
            .output()
            .map_err(|e| format!("running skopeo: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "skopeo copy failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(())
    }

    /// Starts a registry holding the busybox base as `busybox:latest`.
    pub fn with_busybox() -> Result<Registry, String> {
        let registry = Registry::start()?;
        let layout = tempfile::tempdir().map_err(|e| e.to_string())?;
        busybox_layout(layout.path())?;
        registry.push_layout(layout.path(), "busybox:latest")?;
        Ok(registry)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// A runtime wrapper that appends each `run` it is asked for to a log, then execs runc.
pub struct RuntimeLog {
    pub wrapper: PathBuf,
    pub log: PathBuf,
}

impl RuntimeLog {
    pub fn create(dir: &Path) -> Result<RuntimeLog, String> {
        let wrapper = dir.join("runc-logged");
        let log = dir.join("runc.log");
        let runc = ["/usr/sbin/runc", "/usr/bin/runc", "/sbin/runc"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("runc not found (apt-get install runc)")?;
        let mut f = std::fs::File::create(&wrapper).map_err(|e| e.to_string())?;
        writeln!(
            f,
            "#!/bin/sh\nfor a in \"$@\"; do if [ \"$a\" = run ]; then echo \"run $*\" >> '{}'; fi; done\nexec {runc} \"$@\"",
            log.display()
        )
        .map_err(|e| e.to_string())?;
        drop(f);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        Ok(RuntimeLog { wrapper, log })
    }

    /// How many containers were run so far.
    pub fn runs(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    pub fn clear(&self) {
        let _ = std::fs::remove_file(&self.log);
    }
}
