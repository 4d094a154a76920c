//! RUN: BuildKit's `dispatchRun` with its heredocs, `--mount`, `--network` and `--security`.

use super::dispatch::{DispatchCtx, Res, commit, display, expand, with_shell};
use super::ops::{self, ExecExtras, ExtraMount, FileAction, LState, MountKind, SecretUse, SshUse};
use super::stages::DState;
use super::util::{StateEnv, clean, join};
use crate::instructions::run_mount::{self, Mount, MountType, Sharing};
use crate::instructions::{KeyValuePairOptional, RunCommand};
use crate::shell::EnvGetter;
use kiln_llb::pb;

/// `mount_states[i]` is the state `--mount` number i reads with `from=`: `None` without
/// `from=`, `Some(None)` for a stage not dispatched yet.
pub(crate) fn run_cmd(
    d: &mut DState,
    r: RunCommand,
    mount_states: Vec<Option<Option<LState>>>,
    ctx: &DispatchCtx,
) -> Res<()> {
    let platform = d
        .platform
        .clone()
        .unwrap_or_else(|| ctx.target_platform.clone());
    let env = d.state.env.clone();
    // Mount values are expanded in the stage's environment before anything else.
    let mut mounts = Vec::with_capacity(r.mounts.len());
    for value in &r.mounts {
        let mut expander = |w: &str| expand(ctx, &env, w);
        mounts.push(run_mount::parse_mount(value, Some(&mut expander))?);
    }
    let c = r.cmd;
    let mut customname = r.meta.code.clone();
    let mut args = c.args.clone();
    let mut extras = ExecExtras::default();
    if !c.files.is_empty() {
        if args.len() != 1 || !c.prepend_shell {
            return Err(format!("parsing produced an invalid run command: {args:?}"));
        }
        if crate::instructions::parse_heredoc_word(&args[0]).is_some() {
            let f = &c.files[0];
            let data = if f.chomp {
                crate::instructions::chomp_heredoc_content(&f.data)
            } else {
                f.data.clone()
            };
            if d.image.os != "windows" && data.starts_with("#!") {
                // A script with a shebang becomes a file mounted at /dev/pipes/ and run directly.
                let st = ops::inline_document(&f.name, data.into_bytes(), 0o755);
                extras.mounts.push(ExtraMount::bind("/dev/pipes/", st, "/"));
                args = vec![join(&["/dev/pipes/", &f.name])];
            } else {
                args = vec![data];
            }
            customname.push_str(&format!(" ({})", summarize_heredoc(&f.data)));
        } else {
            let mut b = args[0].clone();
            for f in &c.files {
                b.push('\n');
                b.push_str(&f.data);
                b.push_str(&f.name);
            }
            args = vec![b];
        }
    }
    if c.prepend_shell {
        args = with_shell(&d.image, &args);
    }
    // The Go client refuses to marshal an exec without arguments (`RUN []`).
    if args.is_empty() {
        return Err("failed to marshal LLB definition: arguments are required".into());
    }

    run_mounts(d, &mounts, mount_states, ctx, &mut extras)?;
    extras.security = match r.security.as_deref() {
        Some("insecure") => pb::SecurityMode::Insecure as i32,
        _ => pb::SecurityMode::Sandbox as i32,
    };
    extras.network = match r.network.as_deref() {
        Some("none") => pb::NetMode::None as i32,
        Some("host") => pb::NetMode::Host as i32,
        Some(_) => pb::NetMode::Unset as i32,
        None => ctx.run.network,
    };
    // What the client's options give every RUN (dockerui's add-hosts, hostname, ...).
    extras.hostname = ctx.run.hostname.clone();
    extras.extra_hosts = ctx
        .run
        .extra_hosts
        .iter()
        .map(|(host, ip)| pb::HostIp {
            host: host.clone(),
            ip: ip.clone(),
        })
        .collect();
    extras.ulimits = ctx
        .run
        .ulimits
        .iter()
        .map(|(name, soft, hard)| pb::Ulimit {
            name: name.clone(),
            soft: *soft,
            hard: *hard,
        })
        .collect();
    extras.cgroup_parent = ctx.run.cgroup_parent.clone();
    if ctx.run.shm_size > 0 {
        extras.mounts.push(ExtraMount {
            dest: "/dev/shm".into(),
            source: None,
            selector: String::new(),
            readonly: false,
            no_output: false,
            kind: MountKind::Tmpfs {
                size: ctx.run.shm_size,
            },
        });
    }

    let mut raw = ctx.shlex.clone();
    raw.raw_quotes = true;
    raw.skip_unset_env = true;
    // Secrets exposed as variables show as **** in the step's name.
    let mut shown_env = env.clone();
    for m in &mounts {
        if m.kind == MountType::Secret
            && let Some(name) = &m.env
        {
            shown_env.add_or_replace(name, "****");
        }
    }
    let name = display(&raw, &customname, &shown_env);
    let name = d.prefix(&name);
    let md = ops::metadata(
        &[
            ("com.docker.dockerfile.v1.command", &r.meta.code),
            ("llb.customname", &name),
        ],
        &["exec.meta.setsdefaultpath"],
    );
    let out = ops::exec(&d.state, args.clone(), &platform, extras, md);
    d.locations.add(&out, r.meta.start_line, r.meta.end_line);
    d.state.out = Some(out);
    let msg = format!("RUN {}", run_command_string(&args, &d.build_args, &env));
    commit(d, msg, true, true);
    Ok(())
}

/// BuildKit's `dispatchRunMounts`: each `--mount` as an exec mount, secret or SSH socket.
fn run_mounts(
    d: &mut DState,
    mounts: &[Mount],
    mount_states: Vec<Option<Option<LState>>>,
    ctx: &DispatchCtx,
    extras: &mut ExecExtras,
) -> Res<()> {
    for (m, from_state) in mounts.iter().zip(mount_states) {
        match m.kind {
            MountType::Secret => {
                extras.secrets.push(secret(m)?);
                continue;
            }
            MountType::Ssh => {
                extras.ssh.push(ssh(m)?);
                continue;
            }
            _ => {}
        }
        // A cache without from= starts from scratch; a bind without from= reads the context.
        let mut source: Option<Option<kiln_llb::Output>> = match from_state {
            Some(Some(st)) => Some(st.out),
            Some(None) => {
                return Err(format!(
                    "cannot mount from stage {:?} to {:?}, stage needs to be defined before current command",
                    m.from, m.target
                ));
            }
            None if m.kind == MountType::Cache => Some(None),
            None => Some(ctx.context.out.clone()),
        };
        let mut kind = MountKind::Bind;
        if let MountType::Tmpfs = m.kind {
            source = Some(None);
            kind = MountKind::Tmpfs { size: m.size_limit };
        }
        let no_output = !m.readonly && m.kind == MountType::Bind;
        if m.kind == MountType::Cache {
            let sharing = match m.sharing {
                Sharing::Private => pb::CacheSharingOpt::Private,
                Sharing::Locked => pb::CacheSharingOpt::Locked,
                Sharing::Unset | Sharing::Shared => pb::CacheSharingOpt::Shared,
            };
            let id = if m.id.is_empty() {
                clean(&m.target)
            } else {
                m.id.clone()
            };
            kind = MountKind::Cache {
                id: format!("/{id}"),
                sharing: sharing as i32,
            };
        }
        // An absolute target is kept as written; a relative one is joined to the workdir.
        let target = if clean(&m.target).starts_with('/') {
            m.target.clone()
        } else {
            join(&["/", &d.state.dir, &m.target])
        };
        if target == "/" {
            return Err(format!("invalid mount target {target:?}"));
        }
        let mut selector = String::new();
        let src = join(&["/", &m.source]);
        if src != "/" {
            selector = src;
        } else if m.uid.is_some() || m.gid.is_some() || m.mode.is_some() {
            let base = source.take().flatten();
            source = Some(Some(cache_permissions(m, base.as_ref())));
            selector = "/cache".into();
        }
        extras.mounts.push(ExtraMount {
            dest: target,
            source: source.flatten(),
            selector,
            readonly: m.readonly,
            no_output,
            kind,
        });
        // As BuildKit: a cache without from= reads scratch, every other mount without it
        // (tmpfs too) counts as reading the context.
        if m.from.is_empty() && m.kind != MountType::Cache {
            d.ctx_paths.insert(join(&["/", &m.source]));
        }
    }
    Ok(())
}

/// BuildKit's `setCacheUIDGID`: a `/cache` directory with the mount's owner and mode.
fn cache_permissions(m: &Mount, base: Option<&kiln_llb::Output>) -> kiln_llb::Output {
    let mkdir = pb::FileActionMkDir {
        path: "/cache".into(),
        mode: m.mode.unwrap_or(0o755) as i32,
        make_parents: false,
        owner: ops::chown_opt(&format!("{}:{}", m.uid.unwrap_or(0), m.gid.unwrap_or(0))),
        timestamp: -1,
    };
    let md = ops::metadata(
        &[(
            "llb.customname",
            "[internal] setting cache mount permissions",
        )],
        &["file.base"],
    );
    ops::file_op(base, vec![FileAction::Mkdir(mkdir)], md)
}

/// BuildKit's `dispatchSecret`.
fn secret(m: &Mount) -> Res<SecretUse> {
    let mut id = if m.source.is_empty() {
        m.id.clone()
    } else {
        m.source.clone()
    };
    if id.is_empty() {
        if m.target.is_empty() {
            return Err("one of source, target required".into());
        }
        id = base_name(&m.target);
    }
    let target = match (&m.env, m.target.is_empty()) {
        (None, true) => Some(format!("/run/secrets/{}", base_name(&id))),
        (_, false) => Some(m.target.clone()),
        (Some(_), true) => None,
    };
    let (uid, gid, mode) = file_opts(m, 0o400);
    Ok(SecretUse {
        id,
        target,
        env: m.env.clone(),
        uid,
        gid,
        mode,
        optional: !m.required,
    })
}

/// BuildKit's `dispatchSSH`.
fn ssh(m: &Mount) -> Res<SshUse> {
    if !m.source.is_empty() {
        return Err("ssh does not support source".into());
    }
    let (uid, gid, mode) = file_opts(m, 0o600);
    Ok(SshUse {
        id: m.id.clone(),
        target: m.target.clone(),
        uid,
        gid,
        mode,
        optional: !m.required,
    })
}

/// Owner and mode of a secret file or SSH socket; the mode defaults to `default_mode`.
fn file_opts(m: &Mount, default_mode: u32) -> (u32, u32, u32) {
    (
        m.uid.unwrap_or(0) as u32,
        m.gid.unwrap_or(0) as u32,
        m.mode.map_or(default_mode, |v| v as u32),
    )
}

/// Go's `path.Base`.
fn base_name(p: &str) -> String {
    let trimmed = p.trim_end_matches('/');
    if trimmed.is_empty() {
        return if p.is_empty() { ".".into() } else { "/".into() };
    }
    trimmed.rsplit('/').next().unwrap_or(trimmed).to_string()
}

fn summarize_heredoc(doc: &str) -> String {
    let doc = doc.trim().replace("\r\n", "\n");
    let mut lines = doc.split('\n');
    let first = lines.next().unwrap_or_default().to_string();
    if lines.next().is_some() {
        format!("{first}...")
    } else {
        first
    }
}

/// The history line of a RUN: the build args in effect (`|N K=V…`), then the command.
fn run_command_string(
    args: &[String],
    build_args: &[KeyValuePairOptional],
    env: &StateEnv,
) -> String {
    let mut tmp: Vec<(String, String)> = Vec::new();
    for a in build_args {
        let v = env
            .get(&a.key)
            .unwrap_or_else(|| a.value.clone().unwrap_or_default());
        match tmp.iter_mut().find(|(k, _)| *k == a.key) {
            Some(e) => e.1 = v,
            None => tmp.push((a.key.clone(), v)),
        }
    }
    let mut parts: Vec<String> = Vec::new();
    if !tmp.is_empty() {
        parts.push(format!("|{}", tmp.len()));
        parts.extend(tmp.into_iter().map(|(k, v)| format!("{k}={v}")));
    }
    parts.extend(args.iter().cloned());
    parts.join(" ")
}
