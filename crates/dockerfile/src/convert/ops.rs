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

/// A mount of an exec op besides the root.
pub(crate) struct ExtraMount {
    pub dest: String,
    pub source: Output,
    pub selector: String,
    pub readonly: bool,
}

pub(crate) fn exec(
    st: &LState,
    args: Vec<String>,
    platform: &pb::Platform,
    extra: Vec<ExtraMount>,
    md: pb::OpMetadata,
) -> Output {
    // Mounts are sorted by target, inputs deduplicated, as the Go client does.
    let mut mounts: Vec<(String, Option<Output>, String, bool)> =
        vec![("/".into(), st.out.clone(), String::new(), false)];
    for m in extra {
        mounts.push((m.dest, Some(m.source), m.selector, m.readonly));
    }
    mounts.sort_by(|a, b| a.0.cmp(&b.0));
    let mut inputs: Vec<Output> = Vec::new();
    let mut pmounts = Vec::new();
    let mut out_index = 0;
    for (dest, src, selector, readonly) in mounts {
        let input = match src {
            Some(o) => index_of(&mut inputs, o),
            None => -1,
        };
        let output = if readonly {
            -1
        } else {
            out_index += 1;
            out_index - 1
        };
        pmounts.push(pb::Mount {
            input,
            dest,
            output,
            readonly,
            selector,
            ..Default::default()
        });
    }
    let op = pb::Op {
        platform: Some(platform.clone()),
        constraints: constraints(),
        op: Some(pb::op::Op::Exec(pb::ExecOp {
            meta: Some(pb::Meta {
                args,
                env: st.env.to_array(),
                cwd: st.dir.clone(),
                user: st.user.clone(),
                remove_mount_stubs_recursive: true,
                ..Default::default()
            }),
            mounts: pmounts,
            ..Default::default()
        })),
        ..Default::default()
    };
    Vertex::output(op, inputs, md)
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
    let mut staged = Vec::new();
    for a in actions {
        let (action, secondary) = match a {
            FileAction::Mkdir(mut m) => {
                set_owner_input(m.owner.as_mut(), base_idx);
                (pb::file_action::Action::Mkdir(m), -1)
            }
            FileAction::Mkfile(mut m) => {
                set_owner_input(m.owner.as_mut(), base_idx);
                (pb::file_action::Action::Mkfile(m), -1)
            }
            FileAction::Copy(mut c, src) => {
                set_owner_input(c.owner.as_mut(), base_idx);
                let s = src.map_or(-1, |o| index_of(&mut inputs, o));
                (pb::file_action::Action::Copy(*c), s)
            }
        };
        staged.push((action, secondary));
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
    Vertex::output(op, inputs, md)
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
        let id = if v == "root" {
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

/// The order BuildKit's client walks a vertex's inputs in.
fn visit_order(v: &Vertex) -> Vec<&Output> {
    let inputs = v.inputs();
    let Some(pb::op::Op::File(f)) = &v.op().op else {
        return inputs.iter().collect();
    };
    let mut order: Vec<usize> = Vec::new();
    let mut push = |i: i64| {
        if i >= 0 && (i as usize) < inputs.len() && !order.contains(&(i as usize)) {
            order.push(i as usize);
        }
    };
    if let Some(first) = f.actions.first() {
        push(first.input);
    }
    for a in f.actions.iter().rev() {
        push(a.secondary_input);
    }
    for i in 0..inputs.len() {
        push(i as i64);
    }
    order.into_iter().map(|i| &inputs[i]).collect()
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
    for i in visit_order(v) {
        visit(&i.vertex, seen, written, def, visited);
    }
    seen.insert(key);
    visited.push(v.clone());
    let m = def.metadata.entry(v.digest().to_string()).or_default();
    let md = v.metadata();
    m.ignore_cache |= md.ignore_cache;
    for (k, val) in &md.description {
        m.description.insert(k.clone(), val.clone());
    }
    for k in md.caps.keys() {
        m.caps.insert(k.clone(), true);
    }
    if md.progress_group.is_some() {
        m.progress_group = md.progress_group.clone();
    }
    if written.insert(v.digest().to_string()) {
        def.def.push(kiln_proto::marshal_op(v.op()));
    }
}
