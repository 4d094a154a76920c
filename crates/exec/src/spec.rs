//! The OCI runtime config (config.json) for a RUN step, with BuildKit's defaults, as a plain
//! JSON value: containerd's default Unix spec as BuildKit adjusts it (executor/oci).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::etc::DEFAULT_HOSTNAME;
use crate::seccomp::{SeccompHost, default_profile};
use crate::user::ResolvedUser;

/// The PATH a step gets when its environment has none (BuildKit's `DefaultPathEnvUnix`).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Which network namespace the container uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// The host's network (BuildKit's default for compatibility).
    #[default]
    Host,
    /// A fresh, empty network namespace (loopback only).
    None,
}

/// An extra mount into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtraMount {
    /// Absolute path inside the container.
    pub destination: String,
    pub kind: MountKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A host file or directory.
    Bind { source: PathBuf, readonly: bool },
    /// A fresh tmpfs of at most `size` bytes (0: the kernel's default, half the memory).
    Tmpfs { size: i64 },
}

impl ExtraMount {
    pub fn bind(source: impl Into<PathBuf>, destination: &str, readonly: bool) -> ExtraMount {
        ExtraMount {
            destination: destination.into(),
            kind: MountKind::Bind {
                source: source.into(),
                readonly,
            },
        }
    }
}

/// One container to run: what the step asks for, before any defaults are applied.
#[derive(Debug, Clone, Default)]
pub struct ContainerRequest {
    /// Unique among running containers; also names the cgroup.
    pub id: String,
    /// The already-mounted root filesystem.
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    /// Working directory; created (owned by the user) if missing. Empty means `/`.
    pub cwd: String,
    /// As in `USER`: `""`, `name`, `uid`, `name:group`, `uid:gid`.
    pub user: String,
    /// Empty means `buildkitsandbox`.
    pub hostname: String,
    pub network: Network,
    /// `--add-host` entries for /etc/hosts: (host, ip).
    pub extra_hosts: Vec<(String, String)>,
    /// Resource limits: (name as in `RLIMIT_<NAME>` lowercased, soft, hard).
    pub rlimits: Vec<(String, u64, u64)>,
    /// In order: a mount may sit inside an earlier one.
    pub extra_mounts: Vec<ExtraMount>,
}

/// Facts about the host and the bundle that go into the spec.
#[derive(Debug, Clone)]
pub struct SpecHost {
    /// Directory holding the container's `hosts` and `resolv.conf` files.
    pub bundle: PathBuf,
    /// `None` runs without seccomp.
    pub seccomp: Option<SeccompHost>,
    /// Whether to give the container its own cgroup namespace (cgroup v2 only, as BuildKit).
    pub cgroup_namespace: bool,
}

impl SpecHost {
    /// The values for this machine, with files kept in `bundle`.
    pub fn detect(bundle: &Path) -> Self {
        SpecHost {
            bundle: bundle.to_path_buf(),
            seccomp: Some(SeccompHost::detect()),
            cgroup_namespace: Path::new("/proc/self/ns/cgroup").exists()
                && Path::new("/sys/fs/cgroup/cgroup.subtree_control").exists(),
        }
    }
}

/// containerd's default capability set, which BuildKit keeps.
pub fn default_caps() -> Vec<String> {
    [
        "CAP_CHOWN",
        "CAP_DAC_OVERRIDE",
        "CAP_FSETID",
        "CAP_FOWNER",
        "CAP_MKNOD",
        "CAP_NET_RAW",
        "CAP_SETGID",
        "CAP_SETUID",
        "CAP_SETFCAP",
        "CAP_SETPCAP",
        "CAP_NET_BIND_SERVICE",
        "CAP_SYS_CHROOT",
        "CAP_KILL",
        "CAP_AUDIT_WRITE",
    ]
    .map(String::from)
    .to_vec()
}

const MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// Builds config.json for `req` running as `user`.
pub fn build_spec(req: &ContainerRequest, user: &ResolvedUser, host: &SpecHost) -> Value {
    let caps = default_caps();
    let hostname = if req.hostname.is_empty() {
        DEFAULT_HOSTNAME
    } else {
        &req.hostname
    };
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    if req.network == Network::None {
        namespaces.push(json!({"type": "network"}));
    }
    if host.cgroup_namespace {
        namespaces.push(json!({"type": "cgroup"}));
    }
    let mut linux = json!({
        "namespaces": namespaces,
        "maskedPaths": MASKED_PATHS,
        "readonlyPaths": READONLY_PATHS,
        // Unique per container, so a leftover never collides with a new one.
        "cgroupsPath": format!("/kiln/{}", req.id),
        "resources": { "devices": [ { "allow": false, "access": "rwm" } ] },
    });
    if let Some(seccomp) = &host.seccomp {
        linux["seccomp"] = default_profile(seccomp, &caps);
    }
    let mut spec = json!({
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": false,
            "user": {
                "uid": user.uid,
                "gid": user.gid,
                "additionalGids": user.additional_gids,
            },
            "args": req.args,
            "env": environment(&req.env, user),
            "cwd": cwd(&req.cwd),
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps,
            },
            // BuildKit applies WithNewPrivileges: setuid binaries (sudo, ping) keep working.
            "noNewPrivileges": false,
        },
        "root": { "path": req.rootfs, "readonly": false },
        "hostname": hostname,
        "mounts": mounts(req, &host.bundle),
        "linux": linux,
    });
    // No rlimits unless asked for (`ulimit`): BuildKit drops containerd's NOFILE=1024 so the
    // step inherits the daemon's limits.
    if !req.rlimits.is_empty() {
        spec["process"]["rlimits"] = req
            .rlimits
            .iter()
            .map(|(name, soft, hard)| {
                json!({
                    "type": format!("RLIMIT_{}", name.to_uppercase()),
                    "soft": soft,
                    "hard": hard,
                })
            })
            .collect();
    }
    spec
}

/// The step's working directory, absolute.
pub fn cwd(cwd: &str) -> String {
    if cwd.is_empty() {
        "/".to_string()
    } else if cwd.starts_with('/') {
        cwd.to_string()
    } else {
        format!("/{cwd}")
    }
}

/// The environment: later duplicates replace earlier ones in place (containerd's WithEnv),
/// then PATH and HOME are added when missing.
fn environment(env: &[String], user: &ResolvedUser) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let mut out: Vec<String> = Vec::with_capacity(env.len() + 2);
    for entry in env {
        let k = key(entry);
        match out.iter_mut().find(|e| key(e) == k) {
            Some(slot) => *slot = entry.clone(),
            None => out.push(entry.clone()),
        }
    }
    if !out.iter().any(|e| key(e) == "PATH") {
        out.push(format!("PATH={DEFAULT_PATH}"));
    }
    if !out.iter().any(|e| key(e) == "HOME") {
        out.push(format!("HOME={}", user.home));
    }
    out
}

fn mount(dest: &str, kind: &str, source: &str, options: &[&str]) -> Value {
    json!({ "destination": dest, "type": kind, "source": source, "options": options })
}

/// containerd's default mounts without /run (BuildKit removes it), then BuildKit's
/// resolv.conf, hosts and cgroup mounts, then the request's; a later mount on the same
/// destination replaces an earlier one.
fn mounts(req: &ContainerRequest, bundle: &Path) -> Vec<Value> {
    let ro_file = ["nosuid", "noexec", "nodev", "rbind", "ro"];
    let file = |name: &str| bundle.join(name).to_string_lossy().into_owned();
    let mut all = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        ),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        ),
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        ),
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        ),
        mount(
            "/sys",
            "sysfs",
            "sysfs",
            &["nosuid", "noexec", "nodev", "ro"],
        ),
        mount("/etc/resolv.conf", "bind", &file("resolv.conf"), &ro_file),
        mount("/etc/hosts", "bind", &file("hosts"), &ro_file),
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["ro", "nosuid", "noexec", "nodev"],
        ),
    ];
    for m in &req.extra_mounts {
        match &m.kind {
            MountKind::Bind { source, readonly } => {
                let mut options = vec!["rbind"];
                if *readonly {
                    options.push("ro");
                }
                all.push(mount(
                    &m.destination,
                    "bind",
                    &source.to_string_lossy(),
                    &options,
                ));
            }
            // BuildKit's tmpfs mounts: nosuid, and a size only when one is asked for.
            MountKind::Tmpfs { size } => {
                let size = format!("size={size}");
                let mut options = vec!["nosuid"];
                if !size.ends_with("=0") {
                    options.push(&size);
                }
                all.push(mount(&m.destination, "tmpfs", "tmpfs", &options));
            }
        }
    }
    dedup_mounts(all)
}

fn dedup_mounts(mounts: Vec<Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(mounts.len());
    for m in mounts {
        match out
            .iter_mut()
            .find(|seen| seen["destination"] == m["destination"])
        {
            Some(slot) => *slot = m,
            None => out.push(m),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ContainerRequest {
        ContainerRequest {
            id: "c1".into(),
            rootfs: "/rootfs".into(),
            args: vec!["/bin/sh".into(), "-c".into(), "true".into()],
            env: vec!["A=1".into(), "B=2".into(), "A=3".into()],
            cwd: "work".into(),
            ..Default::default()
        }
    }

    fn user() -> ResolvedUser {
        ResolvedUser {
            uid: 1000,
            gid: 1000,
            additional_gids: vec![1000, 4444],
            home: "/home/app".into(),
        }
    }

    fn host() -> SpecHost {
        SpecHost {
            bundle: "/b".into(),
            seccomp: Some(SeccompHost {
                arch: "amd64".into(),
                kernel: (6, 8),
            }),
            cgroup_namespace: false,
        }
    }

    #[test]
    fn buildkit_defaults() {
        let s = build_spec(&request(), &user(), &host());
        let p = &s["process"];
        assert_eq!(p["terminal"], false);
        assert_eq!(p["noNewPrivileges"], false);
        assert_eq!(
            p["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [1000, 4444]})
        );
        assert_eq!(p["cwd"], "/work");
        assert_eq!(
            p["env"],
            json!([
                "A=3",
                "B=2",
                format!("PATH={DEFAULT_PATH}"),
                "HOME=/home/app"
            ])
        );
        assert_eq!(p["capabilities"]["bounding"].as_array().unwrap().len(), 14);
        assert_eq!(
            p["capabilities"]["effective"],
            p["capabilities"]["bounding"]
        );
        assert!(p["capabilities"].get("ambient").is_none());
        assert!(p.get("rlimits").is_none(), "inherited, as in BuildKit");
        assert_eq!(s["hostname"], "buildkitsandbox");
        assert_eq!(s["root"]["path"], "/rootfs");

        let ns: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            ns,
            ["pid", "ipc", "uts", "mount"],
            "host network, no userns"
        );
        assert_eq!(s["linux"]["cgroupsPath"], "/kiln/c1");
        assert_eq!(s["linux"]["maskedPaths"].as_array().unwrap().len(), 11);
        assert_eq!(s["linux"]["readonlyPaths"][3], "/proc/sys");
        assert_eq!(s["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");

        let dests: Vec<&str> = s["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["destination"].as_str().unwrap())
            .collect();
        assert_eq!(
            dests,
            [
                "/proc",
                "/dev",
                "/dev/pts",
                "/dev/shm",
                "/dev/mqueue",
                "/sys",
                "/etc/resolv.conf",
                "/etc/hosts",
                "/sys/fs/cgroup"
            ]
        );
        assert_eq!(s["mounts"][7]["source"], "/b/hosts");
        assert_eq!(
            s["mounts"][7]["options"],
            json!(["nosuid", "noexec", "nodev", "rbind", "ro"])
        );
        assert_eq!(
            s["mounts"][1]["options"],
            json!(["nosuid", "strictatime", "mode=755", "size=65536k"])
        );
    }

    #[test]
    fn network_none_user_env_and_mounts() {
        let mut req = request();
        req.network = Network::None;
        req.hostname = "box".into();
        req.env = vec!["PATH=/x".into(), "HOME=/h".into()];
        req.extra_mounts = vec![
            ExtraMount::bind("/src", "/data", true),
            ExtraMount::bind("/mine", "/etc/hosts", false),
            ExtraMount {
                destination: "/scratch".into(),
                kind: MountKind::Tmpfs { size: 1 << 20 },
            },
        ];
        let mut h = host();
        h.seccomp = None;
        h.cgroup_namespace = true;
        let s = build_spec(&req, &user(), &h);
        assert_eq!(s["process"]["env"], json!(["PATH=/x", "HOME=/h"]));
        assert_eq!(s["hostname"], "box");
        let ns = s["linux"]["namespaces"].as_array().unwrap();
        assert!(ns.contains(&json!({"type": "network"})));
        assert!(ns.contains(&json!({"type": "cgroup"})));
        assert!(s["linux"].get("seccomp").is_none());
        let mounts = s["mounts"].as_array().unwrap();
        assert_eq!(mounts.len(), 11);
        assert_eq!(
            mounts[7]["source"], "/mine",
            "same destination replaces in place"
        );
        assert_eq!(mounts[9]["options"], json!(["rbind", "ro"]));
        assert_eq!(mounts[10]["type"], "tmpfs");
        req.rlimits = vec![("nofile".into(), 1024, 2048)];
        let s = build_spec(&req, &user(), &h);
        assert_eq!(
            s["process"]["rlimits"],
            json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}])
        );
        assert_eq!(mounts[10]["options"], json!(["nosuid", "size=1048576"]));
    }
}
