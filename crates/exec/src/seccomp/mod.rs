//! The default seccomp profile, resolved for one container: the rules whose conditions
//! (architecture, capabilities, kernel version) hold are written into config.json.

use serde_json::{Value, json};

mod table;

/// Where a rule applies. Empty lists mean "no condition".
#[derive(Debug, Clone, Copy)]
pub(crate) struct Filter {
    /// Native architecture names, as Go spells them (`amd64`, `arm64`, `s390x`...).
    pub arches: &'static [&'static str],
    pub caps: &'static [&'static str],
    pub min_kernel: Option<(u32, u32)>,
}

impl Filter {
    pub const NONE: Filter = Filter {
        arches: &[],
        caps: &[],
        min_kernel: None,
    };
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Action {
    Allow,
    Errno(u32),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Op {
    Lt,
    Eq,
    Gt,
    MaskedEq,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Arg {
    pub index: u32,
    pub value: u64,
    pub value_two: u64,
    pub op: Op,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Rule {
    pub names: &'static [&'static str],
    pub action: Action,
    pub args: &'static [Arg],
    pub includes: Filter,
    pub excludes: Filter,
}

/// What the profile's conditions are evaluated against.
#[derive(Debug, Clone)]
pub struct SeccompHost {
    /// Native architecture name (`amd64`, `arm64`, ...).
    pub arch: String,
    /// Kernel version (major, minor).
    pub kernel: (u32, u32),
}

impl SeccompHost {
    /// This machine: the compiled-in architecture and the running kernel.
    pub fn detect() -> Self {
        SeccompHost {
            arch: native_arch().to_string(),
            kernel: kernel_version().unwrap_or((0, 0)),
        }
    }
}

/// Go's name for the architecture this binary runs on.
fn native_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "x86",
        "aarch64" => "arm64",
        "arm" => "arm",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "loongarch64" => "loongarch64",
        other => other,
    }
}

fn kernel_version() -> Option<(u32, u32)> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").ok()?;
    parse_kernel(&release)
}

fn parse_kernel(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().split(['.', '-', '+']);
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The seccomp architectures the filter covers for a native arch (its compat modes too).
fn seccomp_arches(arch: &str) -> &'static [&'static str] {
    match arch {
        "amd64" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "arm64" => &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"],
        "s390x" => &["SCMP_ARCH_S390X", "SCMP_ARCH_S390"],
        "riscv64" => &["SCMP_ARCH_RISCV64"],
        "loongarch64" => &["SCMP_ARCH_LOONGARCH64"],
        _ => &[],
    }
}

fn applies(rule: &Rule, host: &SeccompHost, caps: &[String]) -> bool {
    let has_cap = |c: &&str| caps.iter().any(|have| have == c);
    let ex = &rule.excludes;
    if ex.arches.contains(&host.arch.as_str())
        || ex.caps.iter().any(has_cap)
        || ex.min_kernel.is_some_and(|k| host.kernel >= k)
    {
        return false;
    }
    let inc = &rule.includes;
    if !inc.arches.is_empty() && !inc.arches.contains(&host.arch.as_str()) {
        return false;
    }
    if !inc.caps.iter().all(has_cap) {
        return false;
    }
    inc.min_kernel.is_none_or(|k| host.kernel >= k)
}

/// The `linux.seccomp` object of config.json for a process with these bounding capabilities.
pub fn default_profile(host: &SeccompHost, caps: &[String]) -> Value {
    let syscalls: Vec<Value> = table::RULES
        .iter()
        .filter(|rule| applies(rule, host, caps))
        .map(|rule| {
            let mut call = json!({ "names": rule.names });
            match rule.action {
                Action::Allow => call["action"] = json!("SCMP_ACT_ALLOW"),
                Action::Errno(errno) => {
                    call["action"] = json!("SCMP_ACT_ERRNO");
                    call["errnoRet"] = json!(errno);
                }
            }
            if !rule.args.is_empty() {
                let args: Vec<Value> = rule.args.iter().map(arg_json).collect();
                call["args"] = Value::Array(args);
            }
            call
        })
        .collect();
    json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1, // EPERM
        "architectures": seccomp_arches(&host.arch),
        "syscalls": syscalls,
    })
}

fn arg_json(arg: &Arg) -> Value {
    let op = match arg.op {
        Op::Lt => "SCMP_CMP_LT",
        Op::Eq => "SCMP_CMP_EQ",
        Op::Gt => "SCMP_CMP_GT",
        Op::MaskedEq => "SCMP_CMP_MASKED_EQ",
    };
    let mut v = json!({ "index": arg.index, "value": arg.value, "op": op });
    if arg.value_two != 0 {
        v["valueTwo"] = json!(arg.value_two);
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::default_caps;

    fn allowed(profile: &Value) -> Vec<String> {
        profile["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["action"] == "SCMP_ACT_ALLOW" && c.get("args").is_none())
            .flat_map(|c| c["names"].as_array().unwrap().iter())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    fn amd64() -> SeccompHost {
        SeccompHost {
            arch: "amd64".into(),
            kernel: (6, 18),
        }
    }

    #[test]
    fn default_caps_on_amd64() {
        let p = default_profile(&amd64(), &default_caps());
        assert_eq!(p["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(p["architectures"][0], "SCMP_ARCH_X86_64");
        let names = allowed(&p);
        for must in [
            "read",
            "execve",
            "clone3",
            "arch_prctl",
            "chroot",
            "setns",
            "statx",
        ] {
            let present = names.iter().any(|n| n == must);
            // clone3 is answered with ENOSYS (so glibc falls back to clone) without SYS_ADMIN.
            assert_eq!(present, must != "clone3" && must != "setns", "{must}");
        }
        // ptrace is allowed from kernel 4.8 on (seccomp can no longer be bypassed with it).
        assert!(names.iter().any(|n| n == "ptrace"));
        for never in [
            "mount",
            "reboot",
            "init_module",
            "bpf",
            "s390_pci_mmio_read",
        ] {
            assert!(!names.iter().any(|n| n == never), "{never}");
        }
        let clone3 = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["names"] == json!(["clone3"]))
            .unwrap();
        assert_eq!(clone3["action"], "SCMP_ACT_ERRNO");
        assert_eq!(clone3["errnoRet"], 38);
        // clone is allowed only without namespace flags (mask 0x7e020000, value 0).
        let clone = p["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["names"] == json!(["clone"]))
            .unwrap();
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["value"], 0x7e02_0000u64);
    }

    #[test]
    fn capabilities_and_arches_switch_rules() {
        let mut caps = default_caps();
        caps.push("CAP_SYS_ADMIN".into());
        let p = default_profile(&amd64(), &caps);
        let names = allowed(&p);
        assert!(names.iter().any(|n| n == "mount"));
        assert!(
            names.iter().any(|n| n == "clone"),
            "unconditional clone with SYS_ADMIN"
        );

        let arm = SeccompHost {
            arch: "arm64".into(),
            kernel: (4, 4),
        };
        let p = default_profile(&arm, &default_caps());
        let names = allowed(&p);
        assert!(names.iter().any(|n| n == "arm_fadvise64_64"));
        assert!(!names.iter().any(|n| n == "arch_prctl"));
        assert!(!names.iter().any(|n| n == "ptrace"), "kernel 4.4 < 4.8");
        assert_eq!(
            p["architectures"],
            json!(["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"])
        );
    }

    #[test]
    fn kernel_versions_parse() {
        assert_eq!(parse_kernel("6.18.44-fc-v657\n"), Some((6, 18)));
        assert_eq!(parse_kernel("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel("garbage"), None);
    }
}
