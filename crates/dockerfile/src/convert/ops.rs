//! LLB ops exactly as BuildKit's Go client marshals them (field presence included), and a
//! Definition whose metadata is merged per digest in the client's visiting order.

use kiln_llb::{Output, Vertex, pb};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

/// What an LLB state carries besides its output: BuildKit's state values.
#[derive(Debug, Clone, Default)]
pub(crate) struct LState {
    /// `None` is scratch.
    pub out: Option<Output>,
    pub env: super::util::StateEnv,
    pub dir: String,
    pub user: String,
}

impl LState {
    pub fn new(out: Option<Output>) -> LState {
        LState {
            out,
            dir: "/".into(),
            ..Default::default()
        }
    }
}

pub(crate) fn metadata(desc: &[(&str, &str)], caps: &[&str]) -> pb::OpMetadata {
    pb::OpMetadata {
        description: desc
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        caps: caps.iter().map(|c| (c.to_string(), true)).collect(),
        ..Default::default()
    }
}

fn constraints() -> Option<pb::WorkerConstraints> {
    Some(pb::WorkerConstraints::default())
}

pub(crate) fn image_source(
    identifier: &str,
    platform: &pb::Platform,
    md: pb::OpMetadata,
) -> Output {
    let op = pb::Op {
        platform: Some(platform.clone()),
        constraints: constraints(),
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: identifier.into(),
            attrs: BTreeMap::new(),
        })),
        ..Default::default()
    };
    Vertex::output(op, vec![], md)
}

/// The build context: `local://<name>` with BuildKit's attrs and caps.
pub(crate) fn local_source(
    name: &str,
    follow_paths: &[String],
    excludes: &[String],
    shared_key_hint: &str,
    unique: &str,
) -> Output {
    let mut attrs = BTreeMap::new();
    let mut caps = vec!["source.local", "source.local.unique"];
    if !follow_paths.is_empty() {
        attrs.insert("local.followpaths".to_string(), json_list(follow_paths));
        caps.push("source.local.followpaths");
    }
    if !excludes.is_empty() {
        attrs.insert("local.excludepatterns".to_string(), json_list(excludes));
        caps.push("source.local.excludepatterns");
    }
    if !shared_key_hint.is_empty() {
        attrs.insert(
            "local.sharedkeyhint".to_string(),
            shared_key_hint.to_string(),
        );
        caps.push("source.local.sharedkeyhint");
    }
    attrs.insert("local.unique".to_string(), unique.to_string());
    let op = pb::Op {
        constraints: constraints(),
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: format!("local://{name}"),
            attrs,
        })),
        ..Default::default()
    };
    let md = metadata(
        &[("llb.customname", "[internal] load build context")],
        &caps,
    );
    Vertex::output(op, vec![], md)
}

/// A named context's directory (`local:NAME`): BuildKit's `asyncLocalOutput`.
pub(crate) fn named_local_source(
    name: &str,
    session: Option<&str>,
    excludes: &[String],
    shared_key_hint: &str,
    unique: &str,
    custom_name: &str,
) -> Output {
    let mut attrs = BTreeMap::new();
    let mut caps = vec![
        "source.local",
        "source.local.unique",
        "source.local.sharedkeyhint",
    ];
    if let Some(s) = session.filter(|s| !s.is_empty()) {
        attrs.insert("local.session".to_string(), s.to_string());
        caps.push("source.local.sessionid");
    }
    if !excludes.is_empty() {
        attrs.insert("local.excludepatterns".to_string(), json_list(excludes));
        caps.push("source.local.excludepatterns");
    }
    attrs.insert(
        "local.sharedkeyhint".to_string(),
        shared_key_hint.to_string(),
    );
    attrs.insert("local.unique".to_string(), unique.to_string());
    let op = pb::Op {
        constraints: constraints(),
        op: Some(pb::op::Op::Source(pb::SourceOp {
            identifier: format!("local://{name}"),
            attrs,
        })),
        ..Default::default()
    };
    Vertex::output(
        op,
        vec![],
        metadata(&[("llb.customname", custom_name)], &caps),
    )
}

/// Go's `json.Marshal` of a string list (HTML-safe escaping included).
fn json_list(items: &[String]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|s| {
            let mut o = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => o.push_str("\\\""),
                    '\\' => o.push_str("\\\\"),
                    '\n' => o.push_str("\\n"),
                    '\r' => o.push_str("\\r"),
                    '\t' => o.push_str("\\t"),
                    '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                        o.push_str(&format!("\\u{:04x}", c as u32))
                    }
                    c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
                    c => o.push(c),
                }
            }
            o.push('"');
            o
        })
        .collect();
    format!("[{}]", parts.join(","))
}

/// What kind of mount an [`ExtraMount`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum MountKind {
    Bind,
    /// A persistent cache directory: its id and `pb::CacheSharingOpt`.
    Cache {
        id: String,
        sharing: i32,
    },
    /// A tmpfs of at most this many bytes (0: the runtime's default).
    Tmpfs {
        size: i64,
    },
}

/// A mount of an exec op besides the root.
pub(crate) struct ExtraMount {
    pub dest: String,
    /// `None` is scratch.
    pub source: Option<Output>,
    pub selector: String,
    pub readonly: bool,
    /// A writable mount whose changes are thrown away (BuildKit's `ForceNoOutput`).
    pub no_output: bool,
    pub kind: MountKind,
}

impl ExtraMount {
    /// A read-only bind mount of `source` at `dest`.
    pub fn bind(dest: &str, source: Output, selector: &str) -> ExtraMount {
        ExtraMount {
            dest: dest.into(),
            source: Some(source),
            selector: selector.into(),
            readonly: true,
            no_output: false,
            kind: MountKind::Bind,
        }
    }
}

/// A secret for the step: a file at `target`, an environment variable, or both.
pub(crate) struct SecretUse {
    pub id: String,
    pub target: Option<String>,
    pub env: Option<String>,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub optional: bool,
}

/// A forwarded SSH agent socket.
pub(crate) struct SshUse {
    pub id: String,
    /// Empty: `/run/buildkit/ssh_agent.N`.
    pub target: String,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    pub optional: bool,
}

/// Everything about a step besides its command and root, as the Go client's `ExecInfo` holds.
#[derive(Default)]
pub(crate) struct ExecExtras {
    pub mounts: Vec<ExtraMount>,
    pub secrets: Vec<SecretUse>,
    pub ssh: Vec<SshUse>,
    /// `pb::NetMode`.
    pub network: i32,
    /// `pb::SecurityMode`.
    pub security: i32,
    pub hostname: String,
    pub extra_hosts: Vec<pb::HostIp>,
    pub ulimits: Vec<pb::Ulimit>,
    pub cgroup_parent: String,
}

/// An exec op, marshalled as the Go client's `ExecOp.Marshal` does: mounts sorted by target
/// with inputs deduplicated, secret and SSH mounts after them, and the caps each feature needs.
pub(crate) fn exec(
    st: &LState,
    args: Vec<String>,
    platform: &pb::Platform,
    extras: ExecExtras,
    mut md: pb::OpMetadata,
) -> Output {
    let mut mounts = vec![ExtraMount {
        dest: "/".into(),
        source: st.out.clone(),
        selector: String::new(),
        readonly: false,
        no_output: false,
        kind: MountKind::Bind,
    }];
    mounts.extend(extras.mounts);
    mounts.sort_by(|a, b| a.dest.cmp(&b.dest));
    let mut caps: Vec<&str> = vec!["exec.meta.base"];
    if !extras.ulimits.is_empty() {
        caps.push("exec.meta.ulimit");
    }
    if extras.network != pb::NetMode::Unset as i32 {
        caps.push("exec.meta.network");
    }
    if extras.security == pb::SecurityMode::Insecure as i32 {
        caps.push("exec.meta.security");
    }
    let mut env = st.env.clone();
    let mut ssh = extras.ssh;
    for (i, s) in ssh.iter_mut().enumerate() {
        if s.target.is_empty() {
            s.target = format!("/run/buildkit/ssh_agent.{i}");
        }
    }
    if let Some(first) = ssh.first()
        && crate::shell::EnvGetter::get(&env, "SSH_AUTH_SOCK").is_none()
    {
        env.add_or_replace("SSH_AUTH_SOCK", &first.target);
    }
    let mut inputs: Vec<Output> = Vec::new();
    let mut walk: Vec<Output> = Vec::new();
    let mut pmounts = Vec::new();
    let mut out_index = 0;
    for m in mounts {
        if !m.selector.is_empty() {
            caps.push("exec.mount.selector");
        }
        match &m.kind {
            MountKind::Cache { .. } => {
                caps.push("exec.mount.cache");
                caps.push("exec.mount.cache.sharing");
            }
            MountKind::Tmpfs { size } => {
                caps.push("exec.mount.tmpfs");
                if *size > 0 {
                    caps.push("exec.mount.tmpfs.size");
                }
            }
            MountKind::Bind if m.source.is_some() => caps.push("exec.mount.bind"),
            MountKind::Bind => {}
        }
        let input = match m.source {
            Some(o) => {
                add_walk(&mut walk, &o);
                index_of(&mut inputs, o)
            }
            None => -1,
        };
        let output = if m.no_output || m.readonly || m.kind != MountKind::Bind {
            -1
        } else {
            out_index += 1;
            out_index - 1
        };
        let mut pm = pb::Mount {
            input,
            dest: m.dest,
            output,
            readonly: m.readonly,
            selector: m.selector,
            ..Default::default()
        };
        match m.kind {
            MountKind::Bind => {}
            MountKind::Cache { id, sharing } => {
                pm.mount_type = pb::MountType::Cache as i32;
                pm.cache_opt = Some(pb::CacheOpt { id, sharing });
            }
            MountKind::Tmpfs { size } => {
                pm.mount_type = pb::MountType::Tmpfs as i32;
                pm.tmpfs_opt = Some(pb::TmpfsOpt { size });
            }
        }
        pmounts.push(pm);
    }
    let mut secretenv = Vec::new();
    if !extras.secrets.is_empty() {
        caps.push("exec.mount.secret");
    }
    for s in extras.secrets {
        if let Some(name) = s.env {
            caps.push("exec.secretenv");
            secretenv.push(pb::SecretEnv {
                id: s.id.clone(),
                name,
                optional: s.optional,
            });
        }
        if let Some(dest) = s.target {
            pmounts.push(pb::Mount {
                input: -1,
                dest,
                mount_type: pb::MountType::Secret as i32,
                secret_opt: Some(pb::SecretOpt {
                    id: s.id,
                    uid: s.uid,
                    gid: s.gid,
                    mode: s.mode,
                    optional: s.optional,
                }),
                ..Default::default()
            });
        }
    }
    if !ssh.is_empty() {
        caps.push("exec.mount.ssh");
    }
    for s in ssh {
        pmounts.push(pb::Mount {
            input: -1,
            dest: s.target,
            mount_type: pb::MountType::Ssh as i32,
            ssh_opt: Some(pb::SshOpt {
                id: s.id,
                uid: s.uid,
                gid: s.gid,
                mode: s.mode,
                optional: s.optional,
            }),
            ..Default::default()
        });
    }
    for c in caps {
        md.caps.insert(c.to_string(), true);
    }
    let op = pb::Op {
        platform: Some(platform.clone()),
        constraints: constraints(),
        op: Some(pb::op::Op::Exec(pb::ExecOp {
            meta: Some(pb::Meta {
                args,
                env: env.to_array(),
                cwd: st.dir.clone(),
                user: st.user.clone(),
                hostname: extras.hostname,
                extra_hosts: extras.extra_hosts,
                ulimit: extras.ulimits,
                cgroup_parent: extras.cgroup_parent,
                remove_mount_stubs_recursive: true,
                ..Default::default()
            }),
            mounts: pmounts,
            network: extras.network,
            security: extras.security,
            secretenv,
            ..Default::default()
        })),
        ..Default::default()
    };
    Output {
        vertex: Vertex::with_walk(op, inputs, md, walk),
        index: 0,
    }
}

/// Adds `o` to `walk` unless that very output object is there already.
fn add_walk(walk: &mut Vec<Output>, o: &Output) {
    if !walk
        .iter()
        .any(|w| Arc::ptr_eq(&w.vertex, &o.vertex) && w.index == o.index)
    {
        walk.push(o.clone());
    }
}

fn index_of(inputs: &mut Vec<Output>, o: Output) -> i64 {
    let pos = inputs
        .iter()
        .position(|i| i.vertex.digest() == o.vertex.digest() && i.index == o.index);
    match pos {
        Some(p) => p as i64,
        None => {
            inputs.push(o);
            inputs.len() as i64 - 1
        }
    }
}

/// One action of a file op; `owner` inputs are filled with the base's index.
#[derive(Clone)]
pub(crate) enum FileAction {
    Mkdir(pb::FileActionMkDir),
    Mkfile(pb::FileActionMkFile),
    /// A copy and the state it reads (`None` is scratch).
    Copy(Box<pb::FileActionCopy>, Option<Output>),
}

/// A file op over `base` (`None` is scratch): the actions chain, the last one is output 0.
pub(crate) fn file_op(
    base: Option<&Output>,
    actions: Vec<FileAction>,
    md: pb::OpMetadata,
) -> Output {
    let mut inputs: Vec<Output> = Vec::new();
    let base_idx = base.map_or(-1, |b| index_of(&mut inputs, b.clone()));
    let mut sources: Vec<Option<Output>> = Vec::new();
    let mut staged = Vec::new();
    for a in actions {
        let (action, secondary) = match a {
            FileAction::Mkdir(mut m) => {
                set_owner_input(m.owner.as_mut(), base_idx);
                sources.push(None);
                (pb::file_action::Action::Mkdir(m), -1)
            }
            FileAction::Mkfile(mut m) => {
                set_owner_input(m.owner.as_mut(), base_idx);
                sources.push(None);
                (pb::file_action::Action::Mkfile(m), -1)
            }
            FileAction::Copy(mut c, src) => {
                set_owner_input(c.owner.as_mut(), base_idx);
                sources.push(src.clone());
                let s = src.map_or(-1, |o| index_of(&mut inputs, o));
                (pb::file_action::Action::Copy(*c), s)
            }
        };
        staged.push((action, secondary));
    }
    // The Go client binds every action to the base and walks from the last action: the base,
    // then each action's copy source from the last action to the first.
    let mut walk: Vec<Output> = Vec::new();
    if let Some(b) = base {
        add_walk(&mut walk, b);
    }
    for o in sources.iter().rev().flatten() {
        add_walk(&mut walk, o);
    }
    let n = staged.len();
    let n_inputs = inputs.len() as i64;
    let actions = staged
        .into_iter()
        .enumerate()
        .map(|(i, (action, secondary))| pb::FileAction {
            // Later actions read the previous action's result, numbered after the inputs.
            input: if i == 0 {
                base_idx
            } else {
                n_inputs + i as i64 - 1
            },
            secondary_input: secondary,
            output: if i + 1 == n { 0 } else { -1 },
            action: Some(action),
        })
        .collect();
    let op = pb::Op {
        constraints: constraints(),
        op: Some(pb::op::Op::File(pb::FileOp { actions })),
        ..Default::default()
    };
    Output {
        vertex: Vertex::with_walk(op, inputs, md, walk),
        index: 0,
    }
}

/// A heredoc as a file of its own on scratch (BuildKit's "preparing inline document").
pub(crate) fn inline_document(name: &str, data: Vec<u8>, mode: i32) -> Output {
    let mkfile = pb::FileActionMkFile {
        path: super::util::normalize_path("/", name, false),
        mode,
        data,
        owner: None,
        timestamp: -1,
    };
    let md = metadata(
        &[("llb.customname", "[internal] preparing inline document")],
        &["file.base"],
    );
    file_op(None, vec![FileAction::Mkfile(mkfile)], md)
}

/// A merge of `inputs` (BuildKit's `llb.Merge`; scratch inputs dropped, a single input
/// returned as is).
pub(crate) fn merge(inputs: Vec<Option<Output>>, md: pb::OpMetadata) -> Option<Output> {
    let mut inputs: Vec<Output> = inputs.into_iter().flatten().collect();
    if inputs.len() <= 1 {
        return inputs.pop();
    }
    let op = pb::Op {
        constraints: constraints(),
        op: Some(pb::op::Op::Merge(pb::MergeOp {
            inputs: (0..inputs.len() as i64)
                .map(|input| pb::MergeInput { input })
                .collect(),
        })),
        ..Default::default()
    };
    Some(Vertex::output(op, inputs, md))
}

fn set_owner_input(owner: Option<&mut pb::ChownOpt>, base: i64) {
    if let Some(o) = owner {
        for u in [o.user.as_mut(), o.group.as_mut()].into_iter().flatten() {
            if let Some(pb::user_opt::User::ByName(n)) = u.user.as_mut() {
                n.input = base;
            }
        }
    }
}

/// BuildKit's `llb.WithUser`: `user[:group]`, numbers (and `root`) by id, the rest by name.
pub(crate) fn chown_opt(spec: &str) -> Option<pb::ChownOpt> {
    if spec.is_empty() {
        return None;
    }
    let one = |v: &str| -> pb::UserOpt {
        // An empty name (`--chown=:grp`) is id 0, as the Go client marshals it.
        let id = if v == "root" || v.is_empty() {
            Some(0)
        } else {
            v.parse::<i32>().ok()
        };
        pb::UserOpt {
            user: Some(match id {
                Some(id) => pb::user_opt::User::ById(id as u32),
                None => pb::user_opt::User::ByName(pb::NamedUserOpt {
                    name: v.to_string(),
                    input: 0,
                }),
            }),
        }
    };
    let mut parts = spec.splitn(2, ':');
    let user = parts.next().map(one);
    let group = parts.next().map(one);
    Some(pb::ChownOpt { user, group })
}

/// Marshals the graph ending in `result` as BuildKit's client does: inputs before the ops that
/// read them, in the client's visiting order (a file op visits its base, then the sources of
/// its actions from last to first), every op once, and the metadata of vertices that share a
/// digest merged in visiting order (later descriptions win). Also returns the vertices in
/// visiting order, each object once, for the source map.
pub(crate) fn marshal(result: Option<&Output>) -> (pb::Definition, Vec<Arc<Vertex>>) {
    let mut def = pb::Definition::default();
    let mut visited = Vec::new();
    let Some(out) = result else {
        return (def, visited);
    };
    let mut seen = HashSet::new();
    let mut written = HashSet::new();
    visit(&out.vertex, &mut seen, &mut written, &mut def, &mut visited);
    let terminal = pb::Op {
        inputs: vec![pb::Input {
            digest: out.vertex.digest().to_string(),
            index: out.index,
        }],
        ..Default::default()
    };
    let mut caps = vec!["constraints", "platform"];
    if def.metadata.values().any(|m| !m.description.is_empty()) {
        caps.push("meta.description");
    }
    def.def.push(kiln_proto::marshal_op(&terminal));
    def.metadata
        .insert(kiln_llb::op_digest(&terminal), metadata(&[], &caps));
    (def, visited)
}

fn visit(
    v: &Arc<Vertex>,
    seen: &mut HashSet<usize>,
    written: &mut HashSet<String>,
    def: &mut pb::Definition,
    visited: &mut Vec<Arc<Vertex>>,
) {
    let key = Arc::as_ptr(v) as usize;
    if seen.contains(&key) {
        return;
    }
    for i in v.walk() {
        visit(&i.vertex, seen, written, def, visited);
    }
    seen.insert(key);
    visited.push(v.clone());
    let m = def.metadata.entry(v.digest().to_string()).or_default();
    kiln_llb::merge_metadata(m, v.metadata());
    if written.insert(v.digest().to_string()) {
        def.def.push(kiln_proto::marshal_op(v.op()));
    }
}
