//! Driving the runc binary: one `runc run` per RUN step, under Kiln's own `--root`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

use crate::error::ExecError;
use crate::etc::{hosts_file, resolv_conf};
use crate::rootfs::ensure_dir;
use crate::spec::{ContainerRequest, SpecHost, build_spec, cwd};
use crate::user::resolve_user;

/// Which of the container's output streams a chunk came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How the container's process ended: its exit code, or 128 + the signal that killed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// The runc driver. The state root and bundle directory belong to Kiln alone.
#[derive(Debug, Clone)]
pub struct Runc {
    binary: PathBuf,
    state_root: PathBuf,
    bundles: PathBuf,
}

/// Each bundle records the pid of the process that runs it, so a sweep leaves live ones be.
const OWNER_FILE: &str = "owner";
/// How long a killed container may take to go before runc itself is killed.
const KILL_GRACE: Duration = Duration::from_secs(5);

impl Runc {
    /// A driver using `$KILN_RUNTIME`, or `runc` from PATH.
    pub fn new(state_root: impl Into<PathBuf>, bundles: impl Into<PathBuf>) -> Self {
        let binary = std::env::var_os("KILN_RUNTIME")
            .filter(|v| !v.is_empty())
            .map_or_else(|| PathBuf::from("runc"), PathBuf::from);
        Runc {
            binary,
            state_root: state_root.into(),
            bundles: bundles.into(),
        }
    }

    /// Uses `binary` (a path, or a name looked up on PATH) as the runtime.
    pub fn with_binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = binary.into();
        self
    }

    pub fn binary(&self) -> &Path {
        &self.binary
    }

    /// Runs `req` to completion, streaming its output; stdin is /dev/null. Whatever happens,
    /// the container and its bundle are deleted before this returns.
    pub async fn run<F>(
        &self,
        req: ContainerRequest,
        mut output: F,
        cancel: CancellationToken,
    ) -> Result<ExitStatus, ExecError>
    where
        F: FnMut(Stream, &[u8]) + Send,
    {
        let id = req.id.clone();
        let bundle = self.bundles.join(&id);
        let mut guard = Cleanup {
            runc: self,
            id: id.clone(),
            bundle: bundle.clone(),
            armed: true,
            container: false,
        };
        self.prepare(req, &bundle).await?;
        let log = bundle.join("runc.log");
        // From here on a container may exist, and dropping this future must remove it.
        guard.container = true;

        let mut child = self
            .command()
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json", "run", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| ExecError::Spawn {
                id: id.clone(),
                binary: self.binary.clone(),
                source,
            })?;
        let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), child.stderr.take())
        else {
            return Err(ExecError::Runtime {
                id,
                message: "runtime output pipes missing".into(),
            });
        };

        let (mut out_buf, mut err_buf) = (vec![0u8; 32 * 1024], vec![0u8; 32 * 1024]);
        let (mut out_open, mut err_open) = (true, true);
        let mut status = None;
        let mut cancelled = false;
        // Read both pipes to EOF and reap runc; when the container's init exits, the kernel
        // kills the rest of its pid namespace, so the pipes do close.
        while out_open || err_open || status.is_none() {
            tokio::select! {
                read = stdout.read(&mut out_buf), if out_open => match read {
                    Ok(0) | Err(_) => out_open = false,
                    Ok(n) => output(Stream::Stdout, &out_buf[..n]),
                },
                read = stderr.read(&mut err_buf), if err_open => match read {
                    Ok(0) | Err(_) => err_open = false,
                    Ok(n) => output(Stream::Stderr, &err_buf[..n]),
                },
                waited = child.wait(), if status.is_none() => {
                    status = Some(waited.map_err(|e| ExecError::io("wait for runtime", &self.binary, e))?);
                }
                _ = cancel.cancelled(), if !cancelled => {
                    cancelled = true;
                    break;
                }
            }
        }

        if cancelled {
            self.stop(&id, &mut child).await;
            self.delete(&id).await;
            guard.finish().await;
            return Err(ExecError::Cancelled { id });
        }
        let code = match status {
            Some(s) => s.code().unwrap_or_else(|| {
                use std::os::unix::process::ExitStatusExt;
                128 + s.signal().unwrap_or(0)
            }),
            None => -1,
        };
        let failure = if code != 0 {
            runtime_errors(&log).await
        } else {
            None
        };
        self.delete(&id).await;
        guard.finish().await;
        match failure {
            // runc itself failed (bad config, missing executable...): not the step's exit code.
            Some(message) => Err(ExecError::Runtime { id, message }),
            None => Ok(ExitStatus { code }),
        }
    }

    /// Kills and deletes every container in the state root left by a process that is gone,
    /// and removes their bundles. Returns the ids it cleaned up.
    pub async fn sweep(&self) -> Result<Vec<String>, ExecError> {
        let mut swept = Vec::new();
        // runc keeps a directory per container under its root: with none, there is nothing to
        // sweep and no need to start runc (this keeps a cached rebuild fast).
        let has_containers = std::fs::read_dir(&self.state_root)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if has_containers {
            let out = self
                .command()
                .args(["list", "-q"])
                .stdin(Stdio::null())
                .output()
                .await
                .map_err(|source| ExecError::Spawn {
                    id: String::new(),
                    binary: self.binary.clone(),
                    source,
                })?;
            if !out.status.success() {
                return Err(ExecError::Runtime {
                    id: String::new(),
                    message: format!(
                        "list containers: {}",
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                });
            }
            for id in String::from_utf8_lossy(&out.stdout).lines() {
                let id = id.trim();
                if id.is_empty() || owner_alive(&self.bundles.join(id)) {
                    continue;
                }
                let _ = self.runtime(&["kill", id, "KILL"]).await;
                self.delete(id).await;
                swept.push(id.to_string());
            }
        }
        if let Ok(entries) = std::fs::read_dir(&self.bundles) {
            for entry in entries.flatten() {
                let path = entry.path();
                if !owner_alive(&path) {
                    let _ = tokio::fs::remove_dir_all(&path).await;
                }
            }
        }
        Ok(swept)
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.state_root);
        cmd
    }

    /// Runs a short runtime command; its stderr on failure.
    async fn runtime(&self, args: &[&str]) -> Result<(), String> {
        let out = self
            .command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// Deletes the container unless runc already has: `runc run` removes a container that
    /// exited by itself, and starting runc again costs several milliseconds per step.
    async fn delete(&self, id: &str) {
        if !self.state_root.join(id).exists() {
            return;
        }
        let _ = self.runtime(&["delete", "--force", id]).await;
    }

    /// Kills the container (retrying while runc may still be creating it), then runc itself
    /// if the container does not go away in time.
    async fn stop(&self, id: &str, child: &mut tokio::process::Child) {
        let deadline = tokio::time::Instant::now() + KILL_GRACE;
        loop {
            let _ = self.runtime(&["kill", id, "KILL"]).await;
            match tokio::time::timeout(Duration::from_millis(100), child.wait()).await {
                Ok(_) => return,
                Err(_) if tokio::time::Instant::now() < deadline => continue,
                Err(_) => break,
            }
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
    }

    /// Writes the bundle: config.json, hosts, resolv.conf; resolves the user and creates the
    /// working directory in the rootfs. Blocking file work runs off the async threads.
    async fn prepare(&self, req: ContainerRequest, bundle: &Path) -> Result<(), ExecError> {
        let state_root = self.state_root.clone();
        let bundle = bundle.to_path_buf();
        let task = tokio::task::spawn_blocking(move || -> Result<(), ExecError> {
            for dir in [&state_root, bundle.parent().unwrap_or(Path::new("/"))] {
                std::fs::create_dir_all(dir).map_err(|e| ExecError::io("create", dir, e))?;
            }
            if bundle.exists() {
                std::fs::remove_dir_all(&bundle)
                    .map_err(|e| ExecError::io("remove stale bundle", &bundle, e))?;
            }
            std::fs::create_dir(&bundle).map_err(|e| ExecError::io("create", &bundle, e))?;
            let write = |name: &str, data: &[u8]| {
                let path = bundle.join(name);
                std::fs::write(&path, data).map_err(|e| ExecError::io("write", path, e))
            };
            write(OWNER_FILE, std::process::id().to_string().as_bytes())?;

            let user = resolve_user(&req.rootfs, &req.user)?;
            ensure_dir(&req.rootfs, &cwd(&req.cwd), user.uid, user.gid)?;
            write(
                "hosts",
                hosts_file(&req.hostname, &req.extra_hosts).as_bytes(),
            )?;
            let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            write(
                "resolv.conf",
                resolv_conf(&host_resolv, req.network).as_bytes(),
            )?;
            let spec = build_spec(&req, &user, &SpecHost::detect(&bundle));
            let text = serde_json::to_vec_pretty(&spec).map_err(std::io::Error::other);
            write(
                "config.json",
                &text.map_err(|e| ExecError::io("encode", &bundle, e))?,
            )
        });
        task.await
            .map_err(|e| ExecError::io("prepare bundle", &self.bundles, std::io::Error::other(e)))?
    }
}

/// Error messages runc logged (JSON lines with `"level":"error"`), if any.
async fn runtime_errors(log: &Path) -> Option<String> {
    let text = tokio::fs::read_to_string(log).await.ok()?;
    let messages: Vec<String> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["level"] == "error" || v["level"] == "fatal")
        .filter_map(|v| v["msg"].as_str().map(str::to_string))
        .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

/// Whether the process that wrote `bundle/owner` still exists.
fn owner_alive(bundle: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(bundle.join(OWNER_FILE)) else {
        return false;
    };
    match text.trim().parse::<u32>() {
        Ok(pid) => pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists(),
        Err(_) => false,
    }
}

/// Deletes the container and bundle even if `run` is dropped half-way (its future cancelled):
/// a dropped `runc run` child does not stop the container.
struct Cleanup<'a> {
    runc: &'a Runc,
    id: String,
    bundle: PathBuf,
    armed: bool,
    /// Whether `runc run` may have created the container (else only the bundle is removed).
    container: bool,
}

impl Cleanup<'_> {
    async fn finish(&mut self) {
        self.armed = false;
        let _ = tokio::fs::remove_dir_all(&self.bundle).await;
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if !self.container {
            let _ = std::fs::remove_dir_all(&self.bundle);
            return;
        }
        // Synchronous on purpose: Drop cannot await, and leaving a container behind is worse.
        for args in [
            ["kill", self.id.as_str(), "KILL"].as_slice(),
            ["delete", "--force", self.id.as_str()].as_slice(),
        ] {
            let _ = std::process::Command::new(&self.runc.binary)
                .arg("--root")
                .arg(&self.runc.state_root)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let _ = std::fs::remove_dir_all(&self.bundle);
    }
}
