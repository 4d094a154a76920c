//! Stages: global ARGs, base names, the target and what it needs, base images, ONBUILD
//! triggers, and dispatching the reachable stages in file order.

use super::dispatch::{self, DispatchCtx};
use super::named;
use super::ops::{self, LState};
use super::source_map::Recorded;
use super::util::{NoEnv, StateEnv, normalize_ref};
use super::{ConvertError, ConvertOptions, ImageResolver};
use crate::instructions::{self, Command, Instruction, KeyValuePairOptional, Stage, run_mount};
use crate::parser::ParseResult;
use crate::shell::Lex;
use kiln_llb::{Output, pb};
use std::collections::{BTreeMap, BTreeSet};

pub(crate) const DEFAULT_PATH: &str =
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// One command of a stage with the stage it copies from and whether it came from ONBUILD.
#[derive(Debug, Clone)]
pub(crate) struct Cmd {
    pub command: Command,
    pub source: Option<usize>,
    /// The stage each `RUN --mount` reads with `from=`, by position.
    pub mount_sources: Vec<Option<usize>>,
    /// The scratch stages BuildKit makes for mounts without `from=` (dependencies only).
    pub scratch_stages: Vec<usize>,
    pub is_onbuild: bool,
}

impl Cmd {
    /// Every stage this command reads.
    pub fn sources(&self) -> impl Iterator<Item = usize> + '_ {
        self.source
            .iter()
            .chain(self.mount_sources.iter().flatten())
            .chain(&self.scratch_stages)
            .copied()
    }
}

/// BuildKit's `dispatchState`.
#[derive(Debug, Clone, Default)]
pub(crate) struct DState {
    pub stage: Stage,
    pub stage_name: String,
    pub base: Option<usize>,
    pub deps: BTreeSet<usize>,
    pub commands: Vec<Cmd>,
    pub unregistered: bool,
    pub dispatched: bool,
    pub resolved: bool,
    pub onbuild_init: bool,
    pub state: LState,
    pub image: kiln_oci::Image,
    pub platform: Option<pb::Platform>,
    pub build_args: Vec<KeyValuePairOptional>,
    pub ctx_paths: BTreeSet<String>,
    pub cmd_index: usize,
    pub cmd_total: usize,
    pub cmd_is_onbuild: bool,
    pub cmd_set: bool,
    /// Instruction lines of the ops this stage made, for the source map.
    pub locations: Recorded,
    /// A named context with this stage's name: it replaces the whole stage.
    pub named: Option<named::Found>,
    /// What build checks remember about the stage.
    pub lint: crate::lint::dispatch_checks::StageLint,
}

impl DState {
    /// BuildKit's `prefixCommand`: `[name n/total] ` before step names.
    pub fn prefix(&mut self, s: &str) -> String {
        if self.cmd_total == 0 {
            return s.to_string();
        }
        let mut out = String::from("[");
        if !self.stage_name.is_empty() {
            out.push_str(&self.stage_name);
            out.push(' ');
        }
        self.cmd_index += 1;
        let width = self.cmd_total.to_string().len();
        out.push_str(&format!("{:>width$}/{}] ", self.cmd_index, self.cmd_total));
        if self.cmd_is_onbuild {
            out.push_str("ONBUILD ");
        }
        out + s
    }
}

pub(crate) struct Pass {
    pub output: Option<Output>,
    pub image: kiln_oci::Image,
    pub context_paths: Vec<String>,
    pub locations: Recorded,
    /// The linter with this pass's findings added.
    pub linter: crate::lint::Linter,
}

/// The automatic platform ARGs (`TARGETPLATFORM`, `BUILDARCH`, ...) in BuildKit's order.
pub fn default_platform_args(opts: &super::ConvertOptions, target: &str) -> Vec<(String, String)> {
    let (b, t) = (&opts.build_platform, &opts.target_platform);
    let fmt = |p: &pb::Platform| {
        let mut s = format!("{}/{}", p.os, p.architecture);
        if !p.variant.is_empty() {
            s = format!("{s}/{}", p.variant);
        }
        s
    };
    let target = if target.is_empty() { "default" } else { target };
    let pairs = [
        ("BUILDPLATFORM", fmt(b)),
        ("BUILDOS", b.os.clone()),
        ("BUILDOSVERSION", b.os_version.clone()),
        ("BUILDARCH", b.architecture.clone()),
        ("BUILDVARIANT", b.variant.clone()),
        ("TARGETPLATFORM", fmt(t)),
        ("TARGETOS", t.os.clone()),
        ("TARGETOSVERSION", t.os_version.clone()),
        ("TARGETARCH", t.architecture.clone()),
        ("TARGETVARIANT", t.variant.clone()),
        ("TARGETSTAGE", target.to_string()),
    ];
    pairs
        .into_iter()
        .map(|(k, v)| {
            let v = opts.build_args.get(k).cloned().unwrap_or(v);
            (k.to_string(), v)
        })
        .collect()
}

fn at(line: usize, instruction: &str, message: impl Into<String>) -> ConvertError {
    ConvertError::Dispatch {
        line,
        instruction: instruction.into(),
        message: message.into(),
    }
}

pub(crate) fn convert(
    parsed: &ParseResult,
    opts: &ConvertOptions,
    resolver: &dyn ImageResolver,
    context: Output,
    mut linter: crate::lint::Linter,
) -> Result<Pass, ConvertError> {
    let (stages, meta_args) = instructions::parse(&parsed.ast)?;
    if stages.is_empty() {
        return Err(ConvertError::Invalid(
            "dockerfile contains no stages to build".into(),
        ));
    }
    let target_name = opts
        .target
        .clone()
        .unwrap_or_else(|| stages.last().map(|s| s.name.clone()).unwrap_or_default());
    let shlex = Lex::new(parsed.escape);
    let mut global = StateEnv::default();
    for (k, v) in default_platform_args(opts, &target_name) {
        global.add_or_replace(&k, &v);
    }
    for (meta, args) in &meta_args {
        for kp in args {
            let value = match opts.build_args.get(&kp.key) {
                Some(v) => Some(v.clone()),
                None => match &kp.value {
                    Some(v) => Some(
                        shlex
                            .process_word(v, &global)
                            .map_err(|e| at(meta.start_line, "ARG", e.to_string()))?,
                    ),
                    None => None,
                },
            };
            if let Some(v) = value {
                global.add_or_replace(&kp.key, &v);
            }
        }
    }

    // Names a FROM may use without UndefinedArgInFrom: global ARGs, with or without a value.
    let known: BTreeSet<String> = global
        .0
        .iter()
        .map(|(k, _)| k.clone())
        .chain(
            meta_args
                .iter()
                .flat_map(|(_, a)| a.iter().map(|kp| kp.key.clone())),
        )
        .collect();

    // Stages, with their base names expanded by the global ARGs.
    let mut states: Vec<DState> = Vec::new();
    let mut by_name: BTreeMap<String, usize> = BTreeMap::new();
    for (i, mut st) in stages.into_iter().enumerate() {
        let line = st.start_line;
        let from_check = crate::lint::dispatch_checks::FromCheck {
            start: st.start_line,
            end: st.end_line,
            stage_name: &st.name,
            known: &known,
        };
        let base = shlex
            .process_word_with_matches(&st.base_name, &global)
            .map_err(|e| at(line, "FROM", e.to_string()))?;
        from_check.base(&mut linter, &base);
        let base = base.result;
        if base.is_empty() {
            return Err(at(
                line,
                "FROM",
                format!("base name ({}) should not be blank", st.base_name),
            ));
        }
        st.base_name = base;
        let mut platform = None;
        if !st.platform.is_empty() {
            let p = shlex
                .process_word_with_matches(&st.platform, &global)
                .map_err(|e| at(line, "FROM", e.to_string()))?;
            from_check.platform(
                &mut linter,
                &st.platform,
                &p,
                crate::shell::EnvGetter::get(&global, "TARGETPLATFORM"),
            );
            let p = p.result;
            if p.is_empty() {
                return Err(at(
                    line,
                    "FROM",
                    format!("empty platform value from expression {}", st.platform),
                ));
            }
            platform = Some(
                parse_platform(&p)
                    .ok_or_else(|| at(line, "FROM", format!("failed to parse platform {p}")))?,
            );
        }
        let stage_name = if st.name.is_empty() {
            format!("stage-{i}")
        } else {
            st.name.clone()
        };
        if !st.name.is_empty()
            && let Some(found) =
                named::lookup(opts, &st.name, platform.as_ref()).map_err(|e| at(line, "FROM", e))?
        {
            let ds = DState {
                stage_name,
                platform,
                named: Some(found),
                stage: st,
                ..Default::default()
            };
            let idx = add_state(&mut states, &mut by_name, ds);
            // Not built on an earlier stage: the context is all there is.
            states[idx].base = None;
            continue;
        }
        let mut total =
            usize::from(st.base_name != "scratch" && !by_name.contains_key(&st.base_name));
        total += st
            .commands
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    Command::Add(_) | Command::Copy(_) | Command::Run(_) | Command::Workdir(..)
                )
            })
            .count();
        let ds = DState {
            stage_name,
            platform,
            cmd_total: total,
            stage: st,
            ..Default::default()
        };
        add_state(&mut states, &mut by_name, ds);
    }

    let target = match &opts.target {
        None => states.len() - 1,
        Some(t) => *by_name.get(&t.to_lowercase()).ok_or_else(|| {
            ConvertError::Invalid(format!("target stage {t:?} could not be found"))
        })?,
    };

    // Dependencies: COPY --from.
    let registered = states.len();
    for i in 0..registered {
        let cmds = std::mem::take(&mut states[i].stage.commands);
        let mut out = Vec::new();
        for c in cmds {
            let cmd = to_command(c, &mut states, &mut by_name, &shlex)?;
            states[i].deps.extend(cmd.sources());
            out.push(cmd);
        }
        states[i].commands = out;
    }
    check_cycles(&states)?;
    if states.len() == 1 {
        states[0].stage_name.clear();
    }

    // Resolve base images of reachable stages; ONBUILD triggers may add dependencies.
    let mut reachable;
    loop {
        reachable = reachable_from(&states, target);
        if opts.all_stages {
            reachable = (0..states.len()).collect();
        }
        for (i, d) in states.iter_mut().enumerate() {
            if d.base.is_some() || d.dispatched || d.resolved {
                continue;
            }
            let is_reachable = reachable.contains(&i);
            d.resolved = is_reachable;
            if d.stage.base_name == "scratch" && d.named.is_none() {
                d.state = LState::new(None);
                d.image = empty_image(&opts.target_platform);
                d.platform = Some(opts.target_platform.clone());
                if d.unregistered {
                    d.dispatched = true;
                }
                continue;
            }
            resolve_base_image(d, is_reachable, opts, resolver)?;
        }
        let mut new_deps = false;
        for &i in &reachable {
            init(&mut states, i);
            let mut triggers = std::mem::take(&mut states[i].image.config.on_build);
            if let Some(b) = states[i].base
                && !states[i].onbuild_init
            {
                for c in &states[b].commands {
                    if let Command::Onbuild(_, expr) = &c.command {
                        triggers.push(expr.clone());
                    }
                }
                states[i].onbuild_init = true;
            }
            if !triggers.is_empty()
                && init_onbuild(&mut states, &mut by_name, i, &triggers, &shlex)?
            {
                new_deps = true;
            }
        }
        if !new_deps {
            break;
        }
    }

    let lint = std::cell::RefCell::new(crate::lint::dispatch_checks::DispatchLint::new(
        linter,
        &opts.ignore_patterns,
    ));
    let ctx = DispatchCtx {
        lint: &lint,
        shlex: &shlex,
        global: &global,
        build_args: &opts.build_args,
        context: LState::new(Some(context)),
        target_platform: &opts.target_platform,
        run: &opts.run_defaults,
    };
    let mut ctx_paths = BTreeSet::new();
    for i in 0..states.len() {
        if !reachable.contains(&i) || states[i].dispatched {
            continue;
        }
        init(&mut states, i);
        let d = &mut states[i];
        d.dispatched = true;
        if d.platform.is_none() {
            d.platform = Some(opts.target_platform.clone());
        }
        if !d
            .image
            .config
            .env
            .iter()
            .any(|e| e.split('=').next() == Some("PATH"))
        {
            d.image.config.env.push(format!("PATH={DEFAULT_PATH}"));
        }
        for e in d.image.config.env.clone() {
            let (k, v) = e.split_once('=').unwrap_or((&e, ""));
            d.state.env.add_or_replace(k, v);
        }
        if !d.image.config.working_dir.is_empty() {
            let wd = d.image.config.working_dir.clone();
            dispatch::workdir(d, &wd, false, None, &ctx);
        }
        if !d.image.config.user.is_empty() {
            d.state.user = d.image.config.user.clone();
        }
        let cmds = d.commands.clone();
        for cmd in cmds {
            let src_state = match cmd.source {
                Some(s) => {
                    if !states[s].dispatched {
                        let d = &states[i];
                        return Err(at(
                            cmd.command.meta().start_line,
                            &cmd.command.meta().name.to_uppercase(),
                            format!(
                                "cannot copy from stage {:?}, it needs to be defined before current stage {:?}",
                                states[s].stage_name, d.stage_name
                            ),
                        ));
                    }
                    Some(states[s].state.clone())
                }
                None => None,
            };
            // A stage not dispatched yet is an error at dispatch, once the target is known.
            let mount_states = cmd
                .mount_sources
                .iter()
                .map(|s| s.map(|s| states[s].dispatched.then(|| states[s].state.clone())))
                .collect();
            dispatch::dispatch(&mut states[i], &cmd, src_state, mount_states, &ctx)?;
        }
        ctx_paths.extend(states[i].ctx_paths.iter().cloned());
    }

    let mut locations = Recorded::default();
    for d in &states {
        locations.extend(&d.locations);
    }
    let t = &mut states[target];
    for (k, v) in &opts.labels {
        t.image.config.labels.insert(k.clone(), v.clone());
    }
    let context_paths = if ctx_paths.contains("/") {
        Vec::new()
    } else {
        ctx_paths
            .iter()
            .map(|p| super::util::join(&[".", p]))
            .collect()
    };
    Ok(Pass {
        output: t.state.out.clone(),
        image: t.image.clone(),
        context_paths,
        locations,
        linter: lint.into_inner().linter,
    })
}

fn add_state(
    states: &mut Vec<DState>,
    by_name: &mut BTreeMap<String, usize>,
    mut ds: DState,
) -> usize {
    if let Some(&b) = by_name.get(&ds.stage.base_name) {
        ds.base = Some(b);
    }
    let idx = states.len();
    if !ds.stage.name.is_empty() {
        by_name.insert(ds.stage.name.to_lowercase(), idx);
    }
    states.push(ds);
    idx
}

fn to_command(
    command: Command,
    states: &mut Vec<DState>,
    by_name: &mut BTreeMap<String, usize>,
    shlex: &Lex,
) -> Result<Cmd, ConvertError> {
    let mut source = None;
    if let Command::Copy(c) = &command
        && !c.from.is_empty()
    {
        let line = c.meta.start_line;
        let res = shlex
            .process_word(&c.from, &NoEnv)
            .map_err(|e| at(line, "COPY", e.to_string()))?;
        if res != c.from {
            return Err(at(
                line,
                "COPY",
                "variable expansion is not supported for --from, define a new stage with FROM using ARG from global scope as a workaround",
            ));
        }
        source = Some(match c.from.parse::<i64>() {
            Ok(i) => {
                if i < 0 || i as usize >= states.len() {
                    return Err(at(line, "COPY", format!("invalid stage index {i}")));
                }
                i as usize
            }
            Err(_) => stage_by_name(&c.from, line, c.meta.end_line, states, by_name),
        });
    }
    // RUN --mount from= names a stage or an image (by name only, unlike COPY --from).
    let mut mount_sources = Vec::new();
    let mut scratch_stages = Vec::new();
    if let Command::Run(r) = &command {
        for value in &r.mounts {
            let m =
                run_mount::parse_mount(value, None).map_err(|e| at(r.meta.start_line, "RUN", e))?;
            mount_sources
                .push((!m.from.is_empty()).then(|| stage_by_name(&m.from, 0, 0, states, by_name)));
            // BuildKit gives a mount without from= an unregistered scratch stage of its own;
            // it reads nothing, but it counts (a single-stage file keeps its stage name).
            if m.from.is_empty() {
                let ds = DState {
                    stage: Stage {
                        base_name: "scratch".into(),
                        ..Default::default()
                    },
                    unregistered: true,
                    ..Default::default()
                };
                scratch_stages.push(add_state(states, by_name, ds));
            }
        }
        if !r.devices.is_empty() {
            return Err(at(
                r.meta.start_line,
                "RUN",
                "RUN --device is not supported yet",
            ));
        }
    }
    Ok(Cmd {
        command,
        source,
        mount_sources,
        scratch_stages,
        is_onbuild: false,
    })
}

/// The stage named `name`, or a new unregistered one standing for the image of that name.
fn stage_by_name(
    name: &str,
    line: usize,
    end_line: usize,
    states: &mut Vec<DState>,
    by_name: &mut BTreeMap<String, usize>,
) -> usize {
    if let Some(&s) = by_name.get(&name.to_lowercase()) {
        return s;
    }
    let ds = DState {
        stage: Stage {
            base_name: name.to_string(),
            start_line: line,
            end_line,
            ..Default::default()
        },
        unregistered: true,
        ..Default::default()
    };
    add_state(states, by_name, ds)
}

/// BuildKit's `validateCircularDependency`: depth first from each stage in order; the first
/// stage from which a cycle is reached is named, at the command that closes it.
fn check_cycles(states: &[DState]) -> Result<(), ConvertError> {
    fn visit(
        states: &[DState],
        s: usize,
        visited: &mut BTreeSet<usize>,
        path: &mut BTreeSet<usize>,
    ) -> Option<usize> {
        if !visited.insert(s) {
            return None;
        }
        path.insert(s);
        for &dep in &states[s].deps {
            // The command that makes the dependency, for the error's line.
            let line = states[s]
                .commands
                .iter()
                .find(|c| c.sources().any(|x| x == dep))
                .map_or(states[s].stage.start_line, |c| c.command.meta().start_line);
            if path.contains(&dep) {
                return Some(line);
            }
            if let Some(l) = visit(states, dep, visited, path) {
                return Some(l);
            }
        }
        path.remove(&s);
        None
    }
    let (mut visited, mut path) = (BTreeSet::new(), BTreeSet::new());
    for s in 0..states.len() {
        if let Some(line) = visit(states, s, &mut visited, &mut path) {
            return Err(ConvertError::Stage {
                line,
                message: format!(
                    "circular dependency detected on stage: {}",
                    states[s].stage_name
                ),
            });
        }
    }
    Ok(())
}

fn reachable_from(states: &[DState], target: usize) -> BTreeSet<usize> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![target];
    while let Some(s) = stack.pop() {
        if !seen.insert(s) {
            continue;
        }
        stack.extend(states[s].base);
        stack.extend(states[s].deps.iter().copied());
    }
    seen
}

/// BuildKit's `dispatchState.init`: a stage built on another starts from its state.
fn init(states: &mut [DState], i: usize) {
    let Some(b) = states[i].base else { return };
    let base = states[b].clone();
    let d = &mut states[i];
    d.state = base.state;
    d.platform = base.platform;
    d.image = base.image;
    d.image.config.on_build.clear();
    d.build_args.extend(base.build_args);
    d.lint.workdir_set = base.lint.workdir_set;
}

fn init_onbuild(
    states: &mut Vec<DState>,
    by_name: &mut BTreeMap<String, usize>,
    i: usize,
    triggers: &[String],
    shlex: &Lex,
) -> Result<bool, ConvertError> {
    let line = states[i].stage.start_line;
    let mut new_deps = false;
    let mut cmds = Vec::new();
    for t in triggers {
        let parsed = crate::parser::parse(t.as_bytes())?;
        let [node] = parsed.ast.children.as_slice() else {
            return Err(at(
                line,
                "ONBUILD",
                "onbuild trigger should be a single expression",
            ));
        };
        let mut node = node.clone();
        node.start_line = line;
        node.end_line = states[i].stage.end_line;
        let Instruction::Command(c) = instructions::parse_instruction(&node)? else {
            return Err(at(
                line,
                "ONBUILD",
                "FROM isn't allowed as an ONBUILD trigger",
            ));
        };
        let mut cmd = to_command(c, states, by_name, shlex)?;
        cmd.is_onbuild = true;
        for s in cmd.sources() {
            new_deps = true;
            states[i].deps.insert(s);
        }
        cmds.push(cmd);
    }
    let d = &mut states[i];
    d.cmd_total += cmds.len();
    cmds.append(&mut d.commands);
    d.commands = cmds;
    Ok(new_deps)
}

fn resolve_base_image(
    d: &mut DState,
    reachable: bool,
    opts: &ConvertOptions,
    resolver: &dyn ImageResolver,
) -> Result<(), ConvertError> {
    let line = d.stage.start_line;
    let orig = d.stage.base_name.clone();
    let named = normalize_ref(&orig).map_err(|e| {
        at(
            line,
            "FROM",
            format!("failed to parse stage name {orig:?}: {e}"),
        )
    })?;
    let platform = d
        .platform
        .clone()
        .unwrap_or_else(|| opts.target_platform.clone());
    d.stage.base_name = named;
    if d.unregistered {
        d.dispatched = true;
    }
    if !reachable {
        // BuildKit still makes (and names) the image state of a stage nothing reaches yet, so
        // the step counter moves; if ONBUILD makes the stage reachable, it counts FROM again.
        d.prefix("FROM");
        return Ok(());
    }
    if let Some(found) = d.named.clone() {
        // BuildKit's `resolveBaseImage` with `d.namedContext`: the stage is the context.
        let loaded =
            named::load(&found, &platform, opts, resolver).map_err(|e| at(line, "FROM", e))?;
        d.dispatched = true;
        d.state = loaded.state;
        if let Some(image) = loaded.image {
            if !image.architecture.is_empty() && !image.os.is_empty() {
                d.platform = Some(pb::Platform {
                    os: image.os.clone(),
                    architecture: image.architecture.clone(),
                    variant: image.variant.clone().unwrap_or_default(),
                    os_version: image.os_version.clone().unwrap_or_default(),
                    os_features: image.os_features.clone(),
                });
            }
            d.image = image;
        }
        return Ok(());
    }
    // A base name (or COPY --from image) that a named context overrides.
    if let Some(found) =
        named::lookup(opts, &d.stage.base_name, Some(&platform)).map_err(|e| at(line, "FROM", e))?
    {
        let loaded =
            named::load(&found, &platform, opts, resolver).map_err(|e| at(line, "FROM", e))?;
        d.image = loaded.image.unwrap_or_else(|| empty_image(&platform));
        d.state = loaded.state;
        d.platform = Some(platform);
        return Ok(());
    }
    let resolved = resolver
        .resolve(&orig, &platform)
        .map_err(|e| at(line, "FROM", format!("{orig}: {e}")))?;
    let mut image = resolved.config;
    image.created = None;
    let mut reference = resolved.reference;
    if !resolved.digest.is_empty() && !reference.contains('@') {
        reference = format!("{reference}@{}", resolved.digest);
    }
    d.stage.base_name = reference.clone();
    let is_scratch =
        image.rootfs.diff_ids.is_empty() && image.history.iter().all(|h| h.empty_layer);
    d.image = image;
    if is_scratch {
        d.state = LState::new(None);
    } else {
        let name = d.prefix(&format!("FROM {reference}"));
        let md = ops::metadata(
            &[
                ("com.docker.dockerfile.v1.command", &d.stage.source_code),
                ("llb.customname", &name),
            ],
            &["source.image"],
        );
        let out = ops::image_source(&format!("docker-image://{reference}"), &platform, md);
        // An image only a RUN --mount names has no location of its own, as in BuildKit.
        if d.stage.start_line > 0 {
            d.locations.add(&out, d.stage.start_line, d.stage.end_line);
        }
        d.state = LState::new(Some(out));
    }
    d.platform = Some(platform);
    Ok(())
}

fn empty_image(p: &pb::Platform) -> kiln_oci::Image {
    let mut img = kiln_oci::Image {
        architecture: p.architecture.clone(),
        os: p.os.clone(),
        variant: (!p.variant.is_empty()).then(|| p.variant.clone()),
        os_version: (!p.os_version.is_empty()).then(|| p.os_version.clone()),
        ..Default::default()
    };
    img.config.working_dir = "/".into();
    img.config.env = vec![format!("PATH={DEFAULT_PATH}")];
    img
}

/// `os/arch[/variant]`.
pub(crate) fn parse_platform(s: &str) -> Option<pb::Platform> {
    let parts: Vec<&str> = s.split('/').collect();
    if parts.iter().any(|p| p.is_empty()) || parts.len() > 3 {
        return None;
    }
    let (os, arch, variant) = match parts.as_slice() {
        [os] => (
            os.to_string(),
            kiln_llb::host_arch().to_string(),
            String::new(),
        ),
        [os, arch] => (os.to_string(), arch.to_string(), String::new()),
        [os, arch, v] => (os.to_string(), arch.to_string(), v.to_string()),
        _ => return None,
    };
    let (arch, variant) = match (arch.as_str(), variant.as_str()) {
        ("x86_64" | "x86-64", _) => ("amd64".to_string(), String::new()),
        ("aarch64", v) | ("arm64", v) => (
            "arm64".to_string(),
            if v == "v8" {
                String::new()
            } else {
                v.to_string()
            },
        ),
        ("armhf", _) => ("arm".to_string(), "v7".to_string()),
        ("arm", "") => ("arm".to_string(), "v7".to_string()),
        _ => (arch, variant),
    };
    Some(pb::Platform {
        os: os.to_lowercase(),
        architecture: arch,
        variant,
        ..Default::default()
    })
}
