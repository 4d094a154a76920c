//! ExecOp: a command in a container on top of its root mount; the new layer holds what it changed.

use crate::Worker;
use crate::mounts::Writable;
use crate::secrets::Secrets;
use crate::store::Ref;
use async_trait::async_trait;
use kiln_proto::pb;
use kiln_solver::{ExecContext, Inputs, OpError, Operation, Stream};
use std::collections::{BTreeSet, VecDeque};
use std::path::Path;
use std::sync::{Arc, Mutex};

pub struct ExecOperation {
    pub worker: Arc<Worker>,
    pub op: pb::Op,
    pub exec: pb::ExecOp,
    pub secrets: Arc<Secrets>,
    pub entitlements: BTreeSet<String>,
}

/// The tail of a step's output, kept for the error message when it fails.
#[derive(Default)]
struct Tail {
    lines: VecDeque<String>,
    partial: String,
}

const TAIL_LINES: usize = 10;

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.partial.push_str(&String::from_utf8_lossy(data));
        while let Some(i) = self.partial.find('\n') {
            let line: String = self.partial.drain(..=i).collect();
            self.lines.push_back(line.trim_end().to_string());
            if self.lines.len() > TAIL_LINES {
                self.lines.pop_front();
            }
        }
    }
    fn text(&self) -> String {
        let mut lines: Vec<&str> = self.lines.iter().map(|s| s.as_str()).collect();
        if !self.partial.is_empty() {
            lines.push(&self.partial);
        }
        lines.join("\n")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("process {command:?} did not complete successfully: exit code: {code}{}", output_suffix(.output))]
pub struct ExitError {
    pub command: String,
    pub code: i32,
    pub output: String,
}

fn output_suffix(output: &str) -> String {
    if output.is_empty() {
        String::new()
    } else {
        format!("\n--- last lines of output ---\n{output}")
    }
}

impl ExecOperation {
    fn root(&self) -> Result<&pb::Mount, OpError> {
        Ok(self
            .exec
            .mounts
            .iter()
            .find(|m| m.dest == "/")
            .ok_or("exec op has no root mount")?)
    }

    /// Entitlements the step needs that the client did not ask for, as BuildKit refuses them.
    fn check_entitlements(&self) -> Result<(), OpError> {
        let needs = [
            (
                self.exec.network == pb::NetMode::Host as i32,
                "network.host",
            ),
            (
                self.exec.security == pb::SecurityMode::Insecure as i32,
                "security.insecure",
            ),
        ];
        for (needed, name) in needs {
            if needed && !self.entitlements.contains(name) {
                return Err(format!(
                    "{name} is not allowed: pass --allow {name} to grant it to this build"
                )
                .into());
            }
        }
        if self.exec.security == pb::SecurityMode::Insecure as i32 {
            return Err("RUN --security=insecure is not supported yet".into());
        }
        Ok(())
    }
}

#[async_trait]
impl Operation<Ref> for ExecOperation {
    async fn cache_key(&self, inputs: &Inputs<'_, Ref>) -> Result<String, OpError> {
        super::default_cache_key(&self.op, inputs).await
    }

    async fn execute(
        &self,
        inputs: &Inputs<'_, Ref>,
        ctx: &ExecContext,
    ) -> Result<Vec<Ref>, OpError> {
        if let Some(p) = &self.op.platform {
            can_run(p, Path::new(BINFMT_MISC))?;
        }
        self.check_entitlements()?;
        let root = self.root()?;
        let base = if root.input >= 0 {
            inputs.result(root.input as usize).await?
        } else {
            Ref::scratch()
        };
        let meta = self.exec.meta.clone().unwrap_or_default();
        let store = self.worker.store.clone();
        let base2 = base.clone();
        let writable = tokio::task::spawn_blocking(move || Writable::new(&store, &base2)).await??;
        let prepared = match super::exec_mounts::prepare(
            &self.worker,
            &self.exec,
            inputs,
            &self.secrets,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                let store = self.worker.store.clone();
                let _ = tokio::task::spawn_blocking(move || writable.discard(&store)).await;
                return Err(e);
            }
        };
        // Secret variables go to the process only: never into the op, its key or the logs.
        let mut env = meta.env.clone();
        env.extend(prepared.env.iter().cloned());
        let extra_mounts = prepared.mounts.clone();
        let targets = prepared.targets.clone();

        let network = match pb::NetMode::try_from(self.exec.network).unwrap_or(pb::NetMode::Unset) {
            pb::NetMode::None => kiln_exec::Network::None,
            _ => kiln_exec::Network::Host,
        };
        let hostname = if meta.hostname.is_empty() {
            "buildkitsandbox".to_string()
        } else {
            meta.hostname.clone()
        };
        let request = kiln_exec::ContainerRequest {
            id: format!("kiln-{:016x}", rand::random::<u64>()),
            rootfs: writable.path.clone(),
            args: meta.args.clone(),
            env,
            cwd: if meta.cwd.is_empty() {
                "/".into()
            } else {
                meta.cwd.clone()
            },
            user: meta.user.clone(),
            hostname,
            network,
            extra_hosts: meta
                .extra_hosts
                .iter()
                .map(|h| (h.host.clone(), h.ip.clone()))
                .collect(),
            // A negative limit is unlimited, as go-units writes it.
            rlimits: meta
                .ulimit
                .iter()
                .map(|u| {
                    let v = |n: i64| u64::try_from(n).unwrap_or(u64::MAX);
                    (u.name.clone(), v(u.soft), v(u.hard))
                })
                .collect(),
            extra_mounts,
        };
        let stubs = super::stubs::missing_targets(
            &writable.path,
            &targets,
            meta_remove_stubs_recursive(&self.exec),
        );
        let tail = Arc::new(Mutex::new(Tail::default()));
        let tail2 = tail.clone();
        let log = ctx.clone();
        let status = self
            .worker
            .runtime
            .run(
                request,
                move |stream, data: &[u8]| {
                    let s = match stream {
                        kiln_exec::Stream::Stdout => Stream::Stdout,
                        kiln_exec::Stream::Stderr => Stream::Stderr,
                    };
                    log.log(s, data);
                    tail2.lock().unwrap_or_else(|p| p.into_inner()).push(data);
                },
                ctx.cancel.clone(),
            )
            .await;
        let store = self.worker.store.clone();
        let worker = self.worker.clone();
        let finished = tokio::task::spawn_blocking(move || {
            super::stubs::remove_empty(&stubs);
            let others = prepared.finish(&worker);
            let root = writable.finish(&store);
            Ok::<_, String>((root?, others?))
        })
        .await?;
        let status = status?;
        let (result, others) = finished?;
        if !status.success() {
            return Err(Box::new(ExitError {
                command: meta.args.join(" "),
                code: status.code,
                output: tail.lock().unwrap_or_else(|p| p.into_inner()).text(),
            }));
        }
        // Outputs by index: the root's and those of writable mounts that keep theirs.
        let mut outputs: Vec<(usize, Ref)> = others;
        if let Ok(i) = usize::try_from(root.output) {
            outputs.push((i, result));
        }
        outputs.sort_by_key(|(i, _)| *i);
        if outputs.iter().enumerate().any(|(n, (i, _))| n != *i) {
            return Err("exec op outputs are not numbered 0..n".into());
        }
        Ok(outputs.into_iter().map(|(_, r)| r).collect())
    }
}

fn meta_remove_stubs_recursive(exec: &pb::ExecOp) -> bool {
    exec.meta
        .as_ref()
        .is_some_and(|m| m.remove_mount_stubs_recursive)
}

const BINFMT_MISC: &str = "/proc/sys/fs/binfmt_misc";

/// Whether this host can run a step for `platform`: natively (its own architecture, or 386 on
/// amd64), or through a binfmt_misc handler (`qemu-<arch>`, as qemu-user-static registers
/// them). Checked before anything is mounted, so the error is about the platform, not an
/// `exec format error` from inside the container.
fn can_run(platform: &pb::Platform, binfmt: &Path) -> Result<(), String> {
    let host = kiln_llb::host_platform();
    let arch = platform.architecture.as_str();
    let os = if platform.os.is_empty() {
        "linux"
    } else {
        &platform.os
    };
    let native = arch.is_empty()
        || arch == host.architecture
        || (host.architecture == "amd64" && arch == "386");
    let mut shown = format!("{os}/{arch}");
    if !platform.variant.is_empty() {
        shown = format!("{shown}/{}", platform.variant);
    }
    let host_shown = format!("{}/{}", host.os, host.architecture);
    if os != host.os {
        return Err(format!(
            "cannot run {shown} steps on this {host_shown} host: only {} steps can run here",
            host.os
        ));
    }
    if native {
        return Ok(());
    }
    let qemu = match arch {
        "arm64" => "aarch64",
        "amd64" => "x86_64",
        "386" => "i386",
        "mips64le" => "mips64el",
        "loong64" => "loongarch64",
        other => other,
    };
    let reason = if !binfmt.join("status").exists() {
        format!("binfmt_misc is not mounted at {}", binfmt.display())
    } else {
        let handler = binfmt.join(format!("qemu-{qemu}"));
        match std::fs::read_to_string(&handler) {
            Ok(text) if text.lines().next() == Some("enabled") => return Ok(()),
            Ok(_) => format!("the binfmt_misc handler qemu-{qemu} for {arch} is disabled"),
            Err(_) => format!("no binfmt_misc handler for {arch}"),
        }
    };
    Err(format!(
        "cannot run {shown} steps on this {host_shown} host: emulation is not set up ({reason}; install qemu-user-static and mount binfmt_misc)"
    ))
}

#[cfg(test)]
mod platform_tests {
    use super::*;

    /// A temporary directory, removed on drop.
    struct Dir(std::path::PathBuf);
    impl Dir {
        fn path(&self) -> &Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn platform(arch: &str) -> pb::Platform {
        pb::Platform {
            os: "linux".into(),
            architecture: arch.into(),
            ..Default::default()
        }
    }

    #[test]
    fn foreign_platforms_need_a_binfmt_handler() {
        let foreign = if kiln_llb::host_arch() == "arm64" {
            ("amd64", "x86_64")
        } else {
            ("arm64", "aarch64")
        };
        let dir = std::env::temp_dir().join(format!("kiln-binfmt-{:x}", rand::random::<u64>()));
        std::fs::create_dir(&dir).unwrap();
        let dir = Dir(dir);
        let host = kiln_llb::host_platform();
        assert!(can_run(&host, dir.path()).is_ok());
        // Not mounted: no status file.
        let err = can_run(&platform(foreign.0), dir.path()).unwrap_err();
        assert!(
            err.contains(&format!("cannot run linux/{} steps", foreign.0)),
            "{err}"
        );
        assert!(err.contains("emulation is not set up"), "{err}");
        assert!(err.contains("binfmt_misc is not mounted"), "{err}");
        // Mounted, no handler.
        std::fs::write(dir.path().join("status"), "enabled\n").unwrap();
        let err = can_run(&platform(foreign.0), dir.path()).unwrap_err();
        assert!(
            err.contains(&format!("no binfmt_misc handler for {}", foreign.0)),
            "{err}"
        );
        // A disabled handler, then an enabled one.
        let handler = dir.path().join(format!("qemu-{}", foreign.1));
        std::fs::write(&handler, "disabled\ninterpreter /usr/bin/qemu\n").unwrap();
        assert!(
            can_run(&platform(foreign.0), dir.path())
                .unwrap_err()
                .contains("disabled")
        );
        std::fs::write(&handler, "enabled\ninterpreter /usr/bin/qemu\n").unwrap();
        assert!(can_run(&platform(foreign.0), dir.path()).is_ok());
        let mut win = host.clone();
        win.os = "windows".into();
        assert!(can_run(&win, dir.path()).unwrap_err().contains("windows"));
    }
}
