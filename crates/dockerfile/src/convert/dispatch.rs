//! One instruction at a time: BuildKit's `dispatch*` functions, updating the stage's LLB state
//! and its image config and history.

use super::ConvertError;
use super::ops::{self, FileAction, LState};
use super::remote::{self, AddOpts};
use super::stages::{Cmd, DState};
use super::util::{StateEnv, go_duration, go_quote, go_quote_list, normalize_path};
use crate::instructions::{
    Command, CopyCommand, KeyValuePair, KeyValuePairOptional, Meta, SourcesAndDest,
};
use crate::shell::{EnvGetter, Lex};
use kiln_llb::pb;
use std::collections::BTreeMap;

const HISTORY_COMMENT: &str = "buildkit.dockerfile.v0";

pub(crate) struct DispatchCtx<'a> {
    /// Build checks; borrowed only for the length of one report.
    pub lint: &'a std::cell::RefCell<crate::lint::dispatch_checks::DispatchLint>,
    pub shlex: &'a Lex,
    pub global: &'a StateEnv,
    pub build_args: &'a BTreeMap<String, String>,
    pub context: LState,
    pub target_platform: &'a pb::Platform,
    pub run: &'a super::RunDefaults,
}

pub(crate) type Res<T> = Result<T, String>;

pub(crate) fn dispatch(
    d: &mut DState,
    cmd: &Cmd,
    source: Option<LState>,
    mount_states: Vec<Option<Option<LState>>>,
    ctx: &DispatchCtx,
) -> Result<(), ConvertError> {
    let meta = cmd.command.meta().clone();
    d.cmd_is_onbuild = cmd.is_onbuild;
    {
        let mut lint = ctx.lint.borrow_mut();
        lint.start = meta.start_line;
        lint.end = meta.end_line;
        lint.declared = d.build_args.iter().map(|a| a.key.clone()).collect();
    }
    let r = run(d, cmd.command.clone(), source, mount_states, ctx);
    r.map_err(|message| ConvertError::Dispatch {
        line: meta.start_line,
        instruction: meta.name.to_uppercase(),
        message,
    })
}

/// Expands one word of an instruction; variables it finds unset are UndefinedVar findings.
pub(crate) fn expand(ctx: &DispatchCtx, env: &StateEnv, w: &str) -> Res<String> {
    let r = ctx
        .shlex
        .process_word_with_matches(w, env)
        .map_err(|e| e.to_string())?;
    ctx.lint.borrow_mut().unmatched(&r.unmatched, env);
    Ok(r.result)
}

/// The instruction keyword as written (`cmd`, `CMD`), which BuildKit's messages quote.
fn keyword(meta: &Meta) -> &str {
    meta.code.split_whitespace().next().unwrap_or(&meta.name)
}

fn expand_kvps(ctx: &DispatchCtx, env: &StateEnv, kvps: &mut [KeyValuePair]) -> Res<()> {
    for kv in kvps {
        kv.key = expand(ctx, env, &kv.key)?;
        kv.value = expand(ctx, env, &kv.value)?;
    }
    Ok(())
}

fn expand_sd(ctx: &DispatchCtx, env: &StateEnv, sd: &mut SourcesAndDest) -> Res<()> {
    for s in &mut sd.source_paths {
        *s = expand(ctx, env, s)?;
    }
    sd.dest_path = expand(ctx, env, &sd.dest_path)?;
    // Heredoc bodies expand with quotes left alone.
    let mut raw = Lex::new('\\');
    raw.skip_process_quotes = true;
    for c in &mut sd.source_contents {
        if c.expand {
            let r = raw
                .process_word_with_matches(&c.data, env)
                .map_err(|e| e.to_string())?;
            ctx.lint.borrow_mut().unmatched(&r.unmatched, env);
            c.data = r.result;
        }
    }
    Ok(())
}

fn run(
    d: &mut DState,
    command: Command,
    source: Option<LState>,
    mount_states: Vec<Option<Option<LState>>>,
    ctx: &DispatchCtx,
) -> Res<()> {
    let env = d.state.env.clone();
    match command {
        Command::Env(meta, mut kvps) => {
            expand_kvps(ctx, &env, &mut kvps)?;
            for kv in &kvps {
                let mut lint = ctx.lint.borrow_mut();
                if kv.no_delim {
                    lint.legacy_key_value(keyword(&meta));
                }
                lint.secret_key("ENV", &kv.key);
            }
            let mut msg = String::from("ENV");
            for kv in &kvps {
                msg.push_str(&format!(" {}={}", kv.key, kv.value));
                d.state.env.add_or_replace(&kv.key, &kv.value);
                add_env(&mut d.image.config.env, &kv.key, &kv.value);
            }
            commit(d, msg, false, false);
        }
        Command::Maintainer(_, m) => {
            d.image.author = Some(m.clone());
            commit(d, format!("MAINTAINER {m}"), false, false);
        }
        Command::Label(meta, mut kvps) => {
            expand_kvps(ctx, &env, &mut kvps)?;
            // One finding per legacy pair, as BuildKit reports them.
            for _ in kvps.iter().filter(|kv| kv.no_delim) {
                ctx.lint.borrow_mut().legacy_key_value(keyword(&meta));
            }
            let mut msg = String::from("LABEL");
            for kv in &kvps {
                d.image
                    .config
                    .labels
                    .insert(kv.key.clone(), kv.value.clone());
                msg.push_str(&format!(" {}={}", kv.key, kv.value));
            }
            commit(d, msg, false, false);
        }
        Command::Workdir(meta, path) => {
            let path = expand(ctx, &env, &path)?;
            let windows = d.platform.as_ref().is_some_and(|p| p.os == "windows");
            ctx.lint.borrow_mut().workdir(&mut d.lint, &path, windows);
            workdir(d, &path, true, Some(&meta), ctx);
        }
        Command::User(_, user) => {
            let user = expand(ctx, &env, &user)?;
            d.state.user = user.clone();
            d.image.config.user = user.clone();
            commit(d, format!("USER {user}"), false, false);
        }
        Command::Volume(_, vols) => {
            let mut out = Vec::new();
            for v in vols {
                let v = expand(ctx, &env, &v)?;
                if v.is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                d.image
                    .config
                    .volumes
                    .insert(v.clone(), kiln_oci::image::Empty {});
                out.push(v);
            }
            commit(d, format!("VOLUME [{}]", out.join(" ")), false, false);
        }
        Command::StopSignal(_, sig) => {
            let sig = expand(ctx, &env, &sig)?;
            check_signal(&sig)?;
            d.image.config.stop_signal = sig.clone();
            commit(d, format!("STOPSIGNAL {sig}"), false, false);
        }
        Command::Shell(_, shell) => {
            commit(d, format!("SHELL [{}]", shell.join(" ")), false, false);
            d.image.config.shell = shell;
        }
        Command::Onbuild(_, expr) => d.image.config.on_build.push(expr),
        Command::Cmd(meta, c) => {
            let args = command_line(d, ctx, &meta, c, |d| &mut d.lint.cmd);
            commit(d, format!("CMD {}", go_quote_list(&args)), false, false);
            d.image.config.cmd = Some(args);
            d.image.config.args_escaped = true;
            d.cmd_set = true;
        }
        Command::Entrypoint(meta, c) => {
            let args = command_line(d, ctx, &meta, c, |d| &mut d.lint.entrypoint);
            commit(
                d,
                format!("ENTRYPOINT {}", go_quote_list(&args)),
                false,
                false,
            );
            d.image.config.entrypoint = (!args.is_empty()).then_some(args);
            if !d.cmd_set {
                d.image.config.cmd = None;
            }
        }
        Command::Healthcheck(meta, h) => {
            ctx.lint
                .borrow_mut()
                .used_once(keyword(&meta), &mut d.lint.healthcheck);
            let text = format!(
                "HEALTHCHECK {{Test:[{}] Interval:{} Timeout:{} StartPeriod:{} StartInterval:{} Retries:{}}}",
                h.test.join(" "),
                go_duration(h.interval),
                go_duration(h.timeout),
                go_duration(h.start_period),
                go_duration(h.start_interval),
                h.retries
            );
            d.image.config.healthcheck = Some(kiln_oci::HealthConfig {
                test: h.test,
                interval: h.interval,
                timeout: h.timeout,
                start_period: h.start_period,
                start_interval: h.start_interval,
                retries: h.retries,
            });
            commit(d, text, false, false);
        }
        Command::Expose(_, ports) => {
            let mut words = Vec::new();
            for p in ports {
                words.extend(
                    ctx.shlex
                        .process_words(&p, &env)
                        .map_err(|e| e.to_string())?,
                );
            }
            let mut specs = Vec::new();
            for w in words {
                ctx.lint.borrow_mut().expose(&w);
                specs.extend(parse_port(&w)?);
            }
            for p in &specs {
                d.image
                    .config
                    .exposed_ports
                    .insert(p.clone(), kiln_oci::image::Empty {});
            }
            commit(d, format!("EXPOSE [{}]", specs.join(" ")), false, false);
        }
        Command::Arg(_, args) => arg(d, args, ctx)?,
        Command::Run(r) => super::run::run_cmd(d, r, mount_states, ctx)?,
        Command::Copy(mut c) => {
            c.chown = expand(ctx, &env, &c.chown)?;
            c.chmod = expand(ctx, &env, &c.chmod)?;
            expand_sd(ctx, &env, &mut c.sd)?;
            let from_context = source.is_none();
            let src = source.unwrap_or_else(|| ctx.context.clone());
            copy(d, &c, &src, false, ctx)?;
            if from_context {
                for s in &c.sd.source_paths {
                    ctx.lint.borrow_mut().copy_source(false, s);
                    d.ctx_paths.insert(super::util::join(&["/", s]));
                }
            }
        }
        Command::Add(a) => {
            let mut c = CopyCommand {
                meta: a.meta,
                sd: a.sd,
                from: String::new(),
                chown: expand(ctx, &env, &a.chown)?,
                chmod: expand(ctx, &env, &a.chmod)?,
                link: a.link,
                parents: false,
                exclude: a.exclude,
            };
            expand_sd(ctx, &env, &mut c.sd)?;
            let add = AddOpts::new(a.unpack, a.keep_git_dir, &a.checksum);
            let src = ctx.context.clone();
            copy_impl(d, &c, &src, Some(&add), ctx)?;
            for s in &c.sd.source_paths {
                if !remote::is_remote(s) {
                    ctx.lint.borrow_mut().copy_source(true, s);
                }
                // As BuildKit: every source but a URL counts as a context path (Git ones too).
                if !s.starts_with("http://") && !s.starts_with("https://") {
                    d.ctx_paths.insert(super::util::join(&["/", s]));
                }
            }
        }
    }
    Ok(())
}

/// The arguments of CMD or ENTRYPOINT (the shell prepended to the shell form), after the
/// checks that each may appear once and should use the exec form.
fn command_line(
    d: &mut DState,
    ctx: &DispatchCtx,
    meta: &Meta,
    c: crate::instructions::CmdLine,
    seen: impl FnOnce(&mut DState) -> &mut Option<(usize, usize)>,
) -> Vec<String> {
    let mut lint = ctx.lint.borrow_mut();
    let custom_shell = !d.image.config.shell.is_empty();
    lint.used_once(keyword(meta), seen(d));
    lint.json_args(keyword(meta), c.prepend_shell, custom_shell);
    drop(lint);
    if c.prepend_shell {
        with_shell(&d.image, &c.args)
    } else {
        c.args
    }
}

pub(crate) fn commit(d: &mut DState, msg: String, with_layer: bool, buildkit: bool) {
    let msg = if buildkit {
        format!("{msg} # buildkit")
    } else {
        msg
    };
    d.image.history.push(kiln_oci::History {
        created_by: Some(msg),
        comment: Some(HISTORY_COMMENT.into()),
        empty_layer: !with_layer,
        ..Default::default()
    });
}

fn add_env(env: &mut Vec<String>, k: &str, v: &str) {
    let entry = format!("{k}={v}");
    match env.iter_mut().find(|e| e.split('=').next() == Some(k)) {
        Some(e) => *e = entry,
        None => env.push(entry),
    }
}

pub(crate) fn with_shell(img: &kiln_oci::Image, args: &[String]) -> Vec<String> {
    let mut shell = if img.config.shell.is_empty() {
        if img.os == "windows" {
            vec!["cmd".into(), "/S".into(), "/C".into()]
        } else {
            vec!["/bin/sh".into(), "-c".into()]
        }
    } else {
        img.config.shell.clone()
    };
    shell.push(args.join(" "));
    shell
}

/// Expands a step name for display; on failure the text is kept as written.
pub(crate) fn display(shlex: &Lex, text: &str, env: &dyn EnvGetter) -> String {
    let s = shlex
        .process_word(text, env)
        .unwrap_or_else(|_| text.to_string());
    match s.split_once(' ') {
        Some((first, rest)) => format!("{} {rest}", first.to_uppercase()),
        None => s.to_uppercase(),
    }
}

pub(crate) fn workdir(
    d: &mut DState,
    path: &str,
    commit_it: bool,
    meta: Option<&Meta>,
    ctx: &DispatchCtx,
) {
    // BuildKit's `system.NormalizePath`: an absolute path is kept as written (config, history
    // and the steps' cwd show it so), a relative one is joined to the current one, an empty
    // one is the current one.
    let parent = match d.image.config.working_dir.as_str() {
        "" => "/".to_string(),
        p if p.starts_with('/') => p.to_string(),
        p => super::util::join(&["/", p]),
    };
    let wd = if path.is_empty() {
        parent
    } else if path.starts_with('/') {
        path.to_string()
    } else {
        super::util::join(&[&parent, path])
    };
    d.image.config.working_dir = wd.clone();
    d.state.dir = wd.clone();
    if !commit_it {
        return;
    }
    let mut with_layer = false;
    if wd != "/" {
        let code = meta.map(|m| m.code.clone()).unwrap_or_default();
        let name = display(ctx.shlex, &code, &d.state.env.clone());
        let name = d.prefix(&name);
        let mkdir = pb::FileActionMkDir {
            // The Go client cleans file action paths.
            path: super::util::clean(&wd),
            mode: 0o755,
            make_parents: true,
            owner: ops::chown_opt(&d.image.config.user),
            timestamp: -1,
        };
        let md = ops::metadata(&[("llb.customname", &name)], &["file.base"]);
        let out = ops::file_op(d.state.out.as_ref(), vec![FileAction::Mkdir(mkdir)], md);
        if let Some(m) = meta {
            d.locations.add(&out, m.start_line, m.end_line);
        }
        d.state.out = Some(out);
        with_layer = true;
    }
    commit(d, format!("WORKDIR {wd}"), with_layer, false);
}

fn arg(d: &mut DState, args: Vec<KeyValuePairOptional>, ctx: &DispatchCtx) -> Res<()> {
    let mut commits = Vec::new();
    for mut a in args {
        ctx.lint.borrow_mut().secret_key("ARG", &a.key);
        let has_value = ctx.build_args.contains_key(&a.key);
        if a.value.is_none()
            && !has_value
            && let Some(v) = ctx.global.get(&a.key)
        {
            a.value = Some(v);
        } else if has_value {
            a.value = ctx.build_args.get(&a.key).cloned();
        } else if let Some(v) = &a.value {
            a.value = Some(expand(ctx, &d.state.env, v)?);
        }
        if let Some(v) = &a.value
            && a.key != "BUILDKIT_SBOM_SCAN_CONTEXT"
            && a.key != "BUILDKIT_SBOM_SCAN_STAGE"
        {
            d.state.env.add_or_replace(&a.key, v);
        }
        commits.push(match &a.value {
            Some(v) => format!("{}={v}", a.key),
            None => a.key.clone(),
        });
        ctx.lint.borrow_mut().declared.insert(a.key.clone());
        d.build_args.push(a);
    }
    commit(d, format!("ARG {}", commits.join(" ")), false, false);
    Ok(())
}

fn copy(d: &mut DState, c: &CopyCommand, src: &LState, is_add: bool, ctx: &DispatchCtx) -> Res<()> {
    copy_impl(d, c, src, is_add.then(AddOpts::default).as_ref(), ctx)
}

/// COPY, or ADD when `add` is given.
fn copy_impl(
    d: &mut DState,
    c: &CopyCommand,
    src: &LState,
    add: Option<&AddOpts>,
    ctx: &DispatchCtx,
) -> Res<()> {
    let is_add = add.is_some();
    let mut add = add.cloned();
    let unpack = add.as_ref().is_some_and(|a| a.unpack.unwrap_or(true));
    let dest = {
        let p = &c.sd.dest_path;
        if p.starts_with('/') {
            normalize_path("/", p, true)
        } else {
            let p = if p == "." || p.is_empty() { "./" } else { p };
            normalize_path(&d.state.dir, p, true)
        }
    };
    let (mode, mode_str) = parse_chmod(&c.chmod)?;
    if add.as_ref().is_some_and(|a| !a.checksum.is_empty()) {
        remote::check_checksum_sources(&c.sd.source_paths)?;
    }
    let owner = ops::chown_opt(&c.chown);
    let mut msg = String::from(if is_add { "ADD" } else { "COPY" });
    if c.parents {
        msg.push_str(" --parents");
    }
    if !c.chown.is_empty() {
        msg.push_str(&format!(" --chown={}", c.chown));
    }
    if !c.chmod.is_empty() {
        msg.push_str(&format!(" --chmod={}", c.chmod));
    }
    let env = d.state.env.clone();
    let name = display(ctx.shlex, &c.meta.code, &env);
    let name = d.prefix(&name);
    let mut actions = Vec::new();
    let remote_base = remote::copy_base(&dest, &owner, mode, &mode_str, &c.exclude);
    for s in &c.sd.source_paths {
        msg.push_str(&format!(" {s}"));
        if let Some(a) = remote::remote_copy(s, add.as_mut(), &remote_base, &name)? {
            actions.push(a);
            continue;
        }
        let mut s = s.clone();
        let mut include = Vec::new();
        let mut required = Vec::new();
        if c.parents {
            let (parent, pattern) = match s.split_once("/./") {
                Some((p, pat)) => (p.to_string(), pat.to_string()),
                None => ("/".to_string(), s.clone()),
            };
            let pattern = normalize_path("/", &pattern, false);
            include.push(pattern.trim_start_matches('/').to_string());
            if !has_wildcards(&parent) && !has_wildcards(&pattern) {
                required.push(normalize_path(
                    "/",
                    &super::util::join(&[&parent, &pattern]),
                    false,
                ));
            }
            s = parent;
        }
        let srcp = normalize_path("/", &s, false);
        actions.push(FileAction::Copy(
            Box::new(pb::FileActionCopy {
                src: srcp,
                dest: dest.clone(),
                owner: owner.clone(),
                mode,
                mode_str: mode_str.clone(),
                follow_symlink: true,
                dir_copy_contents: true,
                attempt_unpack_docker_compatibility: unpack,
                create_dest_path: true,
                allow_wildcard: true,
                allow_empty_wildcard: true,
                timestamp: -1,
                include_patterns: include,
                exclude_patterns: c.exclude.clone(),
                required_paths: required,
                ..Default::default()
            }),
            src.out.clone(),
        ));
    }
    for sc in &c.sd.source_contents {
        msg.push_str(&format!(" <<{}", sc.path));
        let st = ops::inline_document(&sc.path, sc.data.clone().into_bytes(), 0o644);
        actions.push(FileAction::Copy(
            Box::new(pb::FileActionCopy {
                src: super::util::join(&["/", &sc.path]),
                dest: dest.clone(),
                owner: owner.clone(),
                mode,
                mode_str: mode_str.clone(),
                create_dest_path: true,
                timestamp: -1,
                exclude_patterns: c.exclude.clone(),
                ..Default::default()
            }),
            Some(st),
        ));
    }
    msg.push_str(&format!(" {}", c.sd.dest_path));
    if c.link && c.chmod.is_empty() {
        // --link: the copy lands on scratch and is merged onto the stage, all three steps
        // under one step number.
        d.cmd_index -= 1;
        let pg_name = d.prefix(&display(ctx.shlex, &c.meta.code, &env));
        let mut md = ops::metadata(&[("llb.customname", &name)], &["file.base"]);
        let probe = ops::file_op(None, actions.clone(), md.clone());
        let group = |weak| pb::ProgressGroup {
            id: probe
                .vertex
                .digest()
                .trim_start_matches("sha256:")
                .chars()
                .take(25)
                .collect(),
            name: pg_name.clone(),
            weak,
        };
        md.progress_group = Some(group(true));
        let copied = ops::file_op(None, actions, md);
        let lines = (c.meta.start_line, c.meta.end_line);
        d.locations.add(&copied, lines.0, lines.1);
        d.cmd_index -= 1;
        let link_name = d.prefix(&format!("LINK {}", display(ctx.shlex, &c.meta.code, &env)));
        let mut mmd = ops::metadata(&[("llb.customname", &link_name)], &["mergeop"]);
        mmd.progress_group = Some(group(false));
        let merged = ops::merge(vec![d.state.out.clone(), Some(copied.clone())], mmd);
        // A merge onto scratch is the copy itself, which already has its location.
        if let Some(m) = &merged
            && !std::sync::Arc::ptr_eq(&m.vertex, &copied.vertex)
        {
            d.locations.add(m, lines.0, lines.1);
        }
        d.state.out = merged;
    } else {
        let md = ops::metadata(&[("llb.customname", &name)], &["file.base"]);
        let out = ops::file_op(d.state.out.as_ref(), actions, md);
        d.locations.add(&out, c.meta.start_line, c.meta.end_line);
        d.state.out = Some(out);
    }
    commit(d, msg, true, true);
    Ok(())
}

fn has_wildcards(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'*' | b'?' | b'[' => return true,
            b'\\' => i += 1,
            _ => {}
        }
        i += 1;
    }
    false
}

/// `--chmod`: octal up to 07777 as a mode, anything else must be a symbolic mode string.
fn parse_chmod(s: &str) -> Res<(i32, String)> {
    if s.is_empty() {
        return Ok((-1, String::new()));
    }
    let bad = || {
        format!("invalid chmod parameter: '{s}'. it should be octal string and between 0 and 07777")
    };
    if s.chars().all(|c| c.is_ascii_digit()) {
        let v = u32::from_str_radix(s, 8).map_err(|_| bad())?;
        if v > 0o7777 {
            return Err(bad());
        }
        return Ok((v as i32, String::new()));
    }
    let symbolic = s.split(',').all(|clause| {
        let ops_at = clause.find(['+', '-', '=']);
        match ops_at {
            Some(i) => {
                clause[..i].chars().all(|c| "ugoa".contains(c))
                    && clause[i..].chars().all(|c| "+-=rwxXstugo".contains(c))
            }
            None => false,
        }
    });
    if !symbolic {
        return Err(bad());
    }
    Ok((0, s.to_string()))
}

/// moby/sys/signal's `ParseSignal`: any non-zero number, or a Linux signal name with or
/// without `SIG`, in any case.
fn check_signal(sig: &str) -> Res<()> {
    if let Ok(n) = sig.parse::<i64>() {
        return if n == 0 {
            Err(format!("invalid signal: {sig}"))
        } else {
            Ok(())
        };
    }
    let upper = sig.to_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    const NAMES: [&str; 34] = [
        "ABRT", "ALRM", "BUS", "CHLD", "CLD", "CONT", "FPE", "HUP", "ILL", "INT", "IO", "IOT",
        "KILL", "PIPE", "POLL", "PROF", "PWR", "QUIT", "SEGV", "STKFLT", "STOP", "SYS", "TERM",
        "TRAP", "TSTP", "TTIN", "TTOU", "URG", "USR1", "USR2", "VTALRM", "WINCH", "XCPU", "XFSZ",
    ];
    // SIGRTMIN..SIGRTMIN+15 and SIGRTMAX-14..SIGRTMAX.
    let realtime = match name.strip_prefix("RTMIN") {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix('+')
            .and_then(|n| n.parse::<u8>().ok().filter(|v| v.to_string() == n))
            .is_some_and(|n| (1..=15).contains(&n)),
        None => match name.strip_prefix("RTMAX") {
            Some("") => true,
            Some(rest) => rest
                .strip_prefix('-')
                .and_then(|n| n.parse::<u8>().ok().filter(|v| v.to_string() == n))
                .is_some_and(|n| (1..=14).contains(&n)),
            None => false,
        },
    };
    if NAMES.contains(&name) || realtime {
        Ok(())
    } else {
        Err(format!("invalid signal: {sig}"))
    }
}

/// BuildKit's `parsePort`: `[ip:][hostPort:]containerPort[/proto]` into `port/proto` entries
/// of the container port (range), with its error texts.
fn parse_port(raw: &str) -> Res<Vec<String>> {
    let parts: Vec<&str> = raw.split(':').collect();
    let n = parts.len();
    let (ip, host_port, container) = match n {
        1 => (String::new(), "", parts[0]),
        2 => (String::new(), parts[0], parts[1]),
        _ => (parts[..n - 2].join(":"), parts[n - 2], parts[n - 1]),
    };
    let (port, proto) = container.split_once('/').unwrap_or((container, ""));
    let proto = if port.is_empty() {
        return Err(format!(
            "invalid port: {}: no port specified",
            go_quote(raw)
        ));
    } else {
        match proto.to_lowercase().as_str() {
            "" => "tcp".to_string(),
            "tcp" | "udp" | "sctp" => proto.to_lowercase(),
            _ => {
                return Err(format!(
                    "invalid port: {}: invalid proto: {proto}",
                    go_quote(raw)
                ));
            }
        }
    };
    let ip = match ip.strip_prefix('[').and_then(|i| i.strip_suffix(']')) {
        Some(v6) => v6.to_string(),
        None => ip,
    };
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    let (start, end) = port_range(port).map_err(|_| format!("invalid containerPort: {port}"))?;
    if !host_port.is_empty() {
        let (hs, he) =
            port_range(host_port).map_err(|_| format!("invalid hostPort: {host_port}"))?;
        if end - start != he - hs && end != start {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {port} and {host_port}"
            ));
        }
    }
    Ok((start..=end).map(|n| format!("{n}/{proto}")).collect())
}

/// `8000` or `8000-9000`, each 0–65535, the end not below the start.
fn port_range(ports: &str) -> Result<(i64, i64), ()> {
    let number = |s: &str| s.parse::<i64>().ok().filter(|n| (0..=65535).contains(n));
    match ports.split_once('-') {
        None => number(ports).map(|n| (n, n)).ok_or(()),
        Some((a, b)) => {
            let start = number(a).ok_or(())?;
            if a == b {
                return Ok((start, start));
            }
            let end = number(b).ok_or(())?;
            if end < start {
                Err(())
            } else {
                Ok((start, end))
            }
        }
    }
}
