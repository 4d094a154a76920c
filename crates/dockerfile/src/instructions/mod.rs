//! Typed instructions built from the syntax tree, following BuildKit's `instructions` package:
//! argument counts, `--flag` rules (bflag), key/value forms, exec vs shell form, heredocs.

use crate::ast::Node;
mod flags;
pub mod run_mount;
mod words;

use flags::{FlagKind, Flags};
pub use words::{chomp_heredoc_content, parse_go_duration, parse_heredoc_word};

/// An instruction that could not be turned into a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "dockerfile parse error on line {line}: {}{message}",
    if instruction.is_empty() { String::new() } else { format!("{instruction}: ") }
)]
pub struct InstructionError {
    pub line: usize,
    /// The instruction keyword, upper case; empty when the message names it (unknown
    /// instructions).
    pub instruction: String,
    pub message: String,
}

/// What every command carries: its keyword, source text and lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The keyword as the parser gave it (lower case).
    pub name: String,
    /// The instruction's source text, trimmed (BuildKit's `String()` of a command).
    pub code: String,
    pub start_line: usize,
    pub end_line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValuePair {
    pub key: String,
    pub value: String,
    /// Written in the legacy `ENV key value` form.
    pub no_delim: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValuePairOptional {
    pub key: String,
    pub value: Option<String>,
}

/// An inline file from a heredoc (`COPY <<EOF /dst`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceContent {
    pub path: String,
    pub data: String,
    pub expand: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourcesAndDest {
    pub dest_path: String,
    pub source_paths: Vec<String>,
    pub source_contents: Vec<SourceContent>,
}

/// A heredoc body attached to a RUN/CMD/ENTRYPOINT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShellInlineFile {
    pub name: String,
    pub data: String,
    pub chomp: bool,
}

/// A command line in shell form (`prepend_shell`) or exec (JSON) form.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdLine {
    pub args: Vec<String>,
    pub files: Vec<ShellInlineFile>,
    pub prepend_shell: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthConfig {
    pub test: Vec<String>,
    /// Durations in nanoseconds.
    pub interval: i64,
    pub timeout: i64,
    pub start_period: i64,
    pub start_interval: i64,
    pub retries: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyCommand {
    pub meta: Meta,
    pub sd: SourcesAndDest,
    pub from: String,
    pub chown: String,
    pub chmod: String,
    pub link: bool,
    pub parents: bool,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddCommand {
    pub meta: Meta,
    pub sd: SourcesAndDest,
    pub chown: String,
    pub chmod: String,
    pub link: bool,
    pub keep_git_dir: Option<bool>,
    pub checksum: String,
    pub unpack: Option<bool>,
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunCommand {
    pub meta: Meta,
    pub cmd: CmdLine,
    /// `--mount` values as written; expanded and parsed when the step is dispatched.
    pub mounts: Vec<String>,
    pub network: Option<String>,
    pub security: Option<String>,
    pub devices: Vec<String>,
}

/// One instruction inside a stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Env(Meta, Vec<KeyValuePair>),
    Maintainer(Meta, String),
    Label(Meta, Vec<KeyValuePair>),
    Add(AddCommand),
    Copy(CopyCommand),
    Onbuild(Meta, String),
    Workdir(Meta, String),
    Run(RunCommand),
    Cmd(Meta, CmdLine),
    Entrypoint(Meta, CmdLine),
    Healthcheck(Meta, HealthConfig),
    Expose(Meta, Vec<String>),
    User(Meta, String),
    Volume(Meta, Vec<String>),
    StopSignal(Meta, String),
    Arg(Meta, Vec<KeyValuePairOptional>),
    Shell(Meta, Vec<String>),
}

impl Command {
    pub fn meta(&self) -> &Meta {
        match self {
            Command::Env(m, _)
            | Command::Maintainer(m, _)
            | Command::Label(m, _)
            | Command::Onbuild(m, _)
            | Command::Workdir(m, _)
            | Command::Cmd(m, _)
            | Command::Entrypoint(m, _)
            | Command::Healthcheck(m, _)
            | Command::Expose(m, _)
            | Command::User(m, _)
            | Command::Volume(m, _)
            | Command::StopSignal(m, _)
            | Command::Arg(m, _)
            | Command::Shell(m, _) => m,
            Command::Add(c) => &c.meta,
            Command::Copy(c) => &c.meta,
            Command::Run(c) => &c.meta,
        }
    }
}

/// A `FROM` and the commands under it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stage {
    /// Lower-cased `AS` name, empty when unnamed.
    pub name: String,
    pub base_name: String,
    pub platform: String,
    /// The FROM line's text, trimmed.
    pub source_code: String,
    pub commands: Vec<Command>,
    pub start_line: usize,
    pub end_line: usize,
}

/// A parsed instruction: a new stage or a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Instruction {
    Stage(Stage),
    Command(Command),
}

/// An ARG before the first FROM: its instruction and its key/value pairs.
pub type MetaArg = (Meta, Vec<KeyValuePairOptional>);

/// Splits a tree into stages and the ARGs before the first FROM.
pub fn parse(ast: &Node) -> Result<(Vec<Stage>, Vec<MetaArg>), InstructionError> {
    let mut stages: Vec<Stage> = Vec::new();
    let mut meta_args = Vec::new();
    for n in &ast.children {
        match parse_instruction(n)? {
            Instruction::Stage(s) => stages.push(s),
            Instruction::Command(Command::Arg(m, a)) if stages.is_empty() => meta_args.push((m, a)),
            Instruction::Command(c) => match stages.last_mut() {
                Some(s) => s.commands.push(c),
                None => {
                    return Err(err(n, "no build stage in current context"));
                }
            },
        }
    }
    Ok((stages, meta_args))
}

fn err(node: &Node, message: impl Into<String>) -> InstructionError {
    InstructionError {
        line: node.start_line,
        instruction: node.value.to_uppercase(),
        message: message.into(),
    }
}

/// The arguments of an instruction node (ONBUILD's wrapped instruction flattened).
pub fn node_args(node: &Node) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = node.next.as_deref();
    while let Some(arg) = cur {
        match arg.children.len() {
            0 => out.push(arg.value.clone()),
            1 => {
                out.push(arg.children[0].value.clone());
                out.extend(node_args(&arg.children[0]));
            }
            _ => {}
        }
        cur = arg.next.as_deref();
    }
    out
}

fn meta_of(node: &Node) -> Meta {
    Meta {
        name: node.value.clone(),
        code: node.original.trim().to_string(),
        start_line: node.start_line,
        end_line: node.end_line,
    }
}

fn is_json(node: &Node) -> bool {
    node.attributes.get("json").copied().unwrap_or(false)
}

fn handle_json_args(args: Vec<String>, json: bool) -> Vec<String> {
    if args.is_empty() || json {
        args
    } else {
        vec![args.join(" ")]
    }
}

fn no_flags(node: &Node) -> Result<(), String> {
    Flags::new(&node.flags, &[]).parse()
}

/// Parses one instruction node.
pub fn parse_instruction(node: &Node) -> Result<Instruction, InstructionError> {
    let e = |m: String| err(node, m);
    let args = node_args(node);
    let meta = meta_of(node);
    let json = is_json(node);
    let cmd = match node.value.to_lowercase().as_str() {
        "env" | "label" => {
            no_flags(node).map_err(e)?;
            let which = node.value.to_uppercase();
            let kvps = parse_kvps(&args, &which).map_err(e)?;
            if which == "ENV" {
                Command::Env(meta, kvps)
            } else {
                Command::Label(meta, kvps)
            }
        }
        "maintainer" => {
            if args.len() != 1 {
                return Err(e("MAINTAINER requires exactly one argument".into()));
            }
            no_flags(node).map_err(e)?;
            Command::Maintainer(meta, args[0].clone())
        }
        "add" => {
            if args.len() < 2 {
                return Err(e(no_dest("ADD")));
            }
            use FlagKind::*;
            let mut f = Flags::new(
                &node.flags,
                &[
                    ("chown", String),
                    ("chmod", String),
                    ("link", Bool),
                    ("keep-git-dir", Bool),
                    ("checksum", String),
                    ("unpack", Bool),
                    ("exclude", Strings),
                ],
            );
            f.parse().map_err(e)?;
            let sd = sources_and_dest(node, &args, "ADD").map_err(e)?;
            Command::Add(AddCommand {
                meta,
                sd,
                chown: f.string("chown"),
                chmod: f.string("chmod"),
                link: f.bool("link"),
                keep_git_dir: f.opt_bool("keep-git-dir"),
                checksum: f.string("checksum"),
                unpack: f.opt_bool("unpack"),
                exclude: f.strings("exclude"),
            })
        }
        "copy" => {
            if args.len() < 2 {
                return Err(e(no_dest("COPY")));
            }
            use FlagKind::*;
            let mut f = Flags::new(
                &node.flags,
                &[
                    ("chown", String),
                    ("from", String),
                    ("chmod", String),
                    ("link", Bool),
                    ("exclude", Strings),
                    ("parents", Bool),
                ],
            );
            f.parse().map_err(e)?;
            let sd = sources_and_dest(node, &args, "COPY").map_err(e)?;
            Command::Copy(CopyCommand {
                meta,
                sd,
                from: f.string("from"),
                chown: f.string("chown"),
                chmod: f.string("chmod"),
                link: f.bool("link"),
                parents: f.bool("parents"),
                exclude: f.strings("exclude"),
            })
        }
        "from" => {
            let name = match args.len() {
                3 if args[1].eq_ignore_ascii_case("as") => {
                    let n = args[2].to_lowercase();
                    if !valid_stage_name(&n) {
                        return Err(e(format!(
                            "invalid name for build stage: {:?}, name can't start with a number or contain symbols",
                            args[2]
                        )));
                    }
                    n
                }
                1 => String::new(),
                _ => return Err(e("FROM requires either one or three arguments".into())),
            };
            let mut f = Flags::new(&node.flags, &[("platform", FlagKind::String)]);
            f.parse().map_err(e)?;
            return Ok(Instruction::Stage(Stage {
                name,
                base_name: args[0].clone(),
                platform: f.string("platform"),
                source_code: meta.code,
                commands: Vec::new(),
                start_line: node.start_line,
                end_line: node.end_line,
            }));
        }
        "onbuild" => {
            if args.is_empty() {
                return Err(e("ONBUILD requires at least one argument".into()));
            }
            no_flags(node).map_err(e)?;
            let trigger = args[0].trim().to_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err(e(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into()
                    ));
                }
                "MAINTAINER" | "FROM" => {
                    return Err(e(format!("{trigger} isn't allowed as an ONBUILD trigger")));
                }
                _ => {}
            }
            let mut expr = strip_onbuild(&node.original);
            for h in &node.heredocs {
                expr.push('\n');
                expr.push_str(&h.content);
                expr.push_str(&h.name);
            }
            Command::Onbuild(meta, expr)
        }
        "workdir" => {
            if args.len() != 1 {
                return Err(e("WORKDIR requires exactly one argument".into()));
            }
            no_flags(node).map_err(e)?;
            Command::Workdir(meta, args[0].clone())
        }
        "run" => {
            use FlagKind::*;
            let mut f = Flags::new(
                &node.flags,
                &[
                    ("mount", Strings),
                    ("network", String),
                    ("security", String),
                    ("device", Strings),
                ],
            );
            f.parse().map_err(e)?;
            for m in f.strings("mount") {
                run_mount::parse_mount(&m, None).map_err(e)?;
            }
            if f.used("network") {
                let n = f.string("network");
                if !["default", "none", "host"].contains(&n.as_str()) {
                    return Err(e(format!("invalid network mode {n:?}")));
                }
            }
            if f.used("security") {
                let s = f.string("security");
                if !["insecure", "sandbox"].contains(&s.as_str()) {
                    return Err(e(format!("security {s:?} is not valid")));
                }
            }
            Command::Run(RunCommand {
                meta,
                cmd: cmd_line(node, args, json, false),
                mounts: f.strings("mount"),
                network: f.used("network").then(|| f.string("network")),
                security: f.used("security").then(|| f.string("security")),
                devices: f.strings("device"),
            })
        }
        "cmd" => {
            no_flags(node).map_err(e)?;
            Command::Cmd(meta, cmd_line(node, args, json, false))
        }
        "entrypoint" => {
            no_flags(node).map_err(e)?;
            Command::Entrypoint(meta, cmd_line(node, args, json, true))
        }
        "healthcheck" => {
            Command::Healthcheck(meta, parse_healthcheck(node, &args, json).map_err(e)?)
        }
        "expose" => {
            if args.is_empty() {
                return Err(e("EXPOSE requires at least one argument".into()));
            }
            no_flags(node).map_err(e)?;
            let mut ports = args;
            ports.sort();
            Command::Expose(meta, ports)
        }
        "user" => {
            if args.len() != 1 {
                return Err(e("USER requires exactly one argument".into()));
            }
            no_flags(node).map_err(e)?;
            Command::User(meta, args[0].clone())
        }
        "volume" => {
            if args.is_empty() {
                return Err(e("VOLUME requires at least one argument".into()));
            }
            no_flags(node).map_err(e)?;
            let mut vols = Vec::new();
            for v in args {
                let v = v.trim();
                if v.is_empty() {
                    return Err(e("VOLUME specified can not be an empty string".into()));
                }
                vols.push(v.to_string());
            }
            Command::Volume(meta, vols)
        }
        "stopsignal" => {
            if args.len() != 1 {
                return Err(e("STOPSIGNAL requires exactly one argument".into()));
            }
            Command::StopSignal(meta, args[0].clone())
        }
        "arg" => {
            if args.is_empty() {
                return Err(e("ARG requires at least one argument".into()));
            }
            let mut pairs = Vec::new();
            for a in &args {
                match a.split_once('=') {
                    Some(("", _)) => return Err(e("ARG names can not be blank".into())),
                    Some((k, v)) => pairs.push(KeyValuePairOptional {
                        key: k.into(),
                        value: Some(v.into()),
                    }),
                    None => pairs.push(KeyValuePairOptional {
                        key: a.clone(),
                        value: None,
                    }),
                }
            }
            Command::Arg(meta, pairs)
        }
        "shell" => {
            no_flags(node).map_err(e)?;
            let shell = handle_json_args(args, json);
            if shell.is_empty() {
                return Err(e("SHELL requires at least one argument".into()));
            }
            if !json {
                return Err(e(format!(
                    "SHELL requires the arguments to be in JSON form: {}",
                    node.original
                )));
            }
            Command::Shell(meta, shell)
        }
        _ => return Err(unknown(node)),
    };
    Ok(Instruction::Command(cmd))
}

/// BuildKit's `unknown instruction: RUNN (did you mean RUN?)`, the word as written.
fn unknown(node: &Node) -> InstructionError {
    let word = node
        .original
        .split_whitespace()
        .next()
        .unwrap_or(&node.value)
        .to_string();
    InstructionError {
        line: node.start_line,
        instruction: String::new(),
        message: crate::parser::ParseErrorKind::UnknownInstruction {
            suggestion: crate::parser::suggest_instruction(&word),
            name: word,
        }
        .to_string(),
    }
}

fn no_dest(cmd: &str) -> String {
    format!(
        "{cmd} requires at least two arguments, but only one was provided. Destination could not be determined"
    )
}

fn valid_stage_name(n: &str) -> bool {
    let mut chars = n.chars();
    matches!(chars.next(), Some('a'..='z'))
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c))
}

/// Removes the leading `ONBUILD` keyword (any case) and the blanks after it.
fn strip_onbuild(original: &str) -> String {
    let s = original.trim_start();
    if s.len() >= 7 && s[..7].eq_ignore_ascii_case("onbuild") {
        s[7..].trim_start().to_string()
    } else {
        original.to_string()
    }
}

fn parse_kvps(args: &[String], cmd: &str) -> Result<Vec<KeyValuePair>, String> {
    if args.is_empty() {
        return Err(format!("{cmd} requires at least one argument"));
    }
    if !args.len().is_multiple_of(3) {
        return Err(format!("Bad input to {cmd}, too many arguments"));
    }
    let mut out = Vec::new();
    for c in args.chunks(3) {
        if c[0].is_empty() {
            return Err(format!("{cmd} names can not be blank"));
        }
        out.push(KeyValuePair {
            key: c[0].clone(),
            value: c[1].clone(),
            no_delim: c[2].is_empty(),
        });
    }
    Ok(out)
}

fn cmd_line(node: &Node, args: Vec<String>, json: bool, empty_as_nil: bool) -> CmdLine {
    let _ = empty_as_nil;
    CmdLine {
        args: handle_json_args(args, json),
        files: node
            .heredocs
            .iter()
            .map(|h| ShellInlineFile {
                name: h.name.clone(),
                data: h.content.clone(),
                chomp: h.chomp,
            })
            .collect(),
        prepend_shell: !json,
    }
}

fn sources_and_dest(node: &Node, args: &[String], cmd: &str) -> Result<SourcesAndDest, String> {
    let (dest, srcs) = args.split_last().ok_or_else(|| no_dest(cmd))?;
    if parse_heredoc_word(dest).is_some() {
        return Err(format!("{cmd} cannot accept a heredoc as a destination"));
    }
    let mut sd = SourcesAndDest {
        dest_path: dest.clone(),
        ..Default::default()
    };
    for src in srcs {
        match parse_heredoc_word(src) {
            Some(h) => {
                let mut content = node
                    .heredocs
                    .iter()
                    .rev()
                    .find(|d| d.name == h.name)
                    .map(|d| d.content.clone())
                    .unwrap_or_default();
                if h.chomp {
                    content = chomp_heredoc_content(&content);
                }
                sd.source_contents.push(SourceContent {
                    path: h.name,
                    data: content,
                    expand: h.expand,
                });
            }
            None => sd.source_paths.push(src.clone()),
        }
    }
    Ok(sd)
}

fn parse_healthcheck(node: &Node, args: &[String], json: bool) -> Result<HealthConfig, String> {
    let Some(first) = args.first() else {
        return Err("HEALTHCHECK requires at least one argument".into());
    };
    let typ = first.to_uppercase();
    let rest = args[1..].to_vec();
    if typ == "NONE" {
        if !rest.is_empty() {
            return Err("HEALTHCHECK NONE takes no arguments".into());
        }
        return Ok(HealthConfig {
            test: vec![typ],
            ..Default::default()
        });
    }
    let s = FlagKind::String;
    let mut f = Flags::new(
        &node.flags,
        &[
            ("interval", s),
            ("timeout", s),
            ("start-period", s),
            ("start-interval", s),
            ("retries", s),
        ],
    );
    f.parse()?;
    if typ != "CMD" {
        return Err(format!("Unknown type {typ:?} in HEALTHCHECK (try CMD)"));
    }
    let cmd = handle_json_args(rest, json);
    if cmd.is_empty() {
        return Err("Missing command after HEALTHCHECK CMD".into());
    }
    let mut test = vec![if json { "CMD" } else { "CMD-SHELL" }.to_string()];
    test.extend(cmd);
    let retries = match f.string("retries").as_str() {
        "" => 0,
        r => {
            let n: i32 = r
                .parse()
                .map_err(|_| format!("invalid retries value {r:?}"))?;
            if n < 0 {
                return Err(format!("--retries cannot be negative ({n})"));
            }
            i64::from(n)
        }
    };
    let dur = |name: &str| -> Result<i64, String> {
        let v = f.string(name);
        if v.is_empty() {
            return Ok(0);
        }
        let d = parse_go_duration(&v).ok_or_else(|| format!("time: invalid duration {v:?}"))?;
        if d != 0 && d < 1_000_000 {
            return Err(format!("Interval {name:?} cannot be less than 1ms"));
        }
        Ok(d)
    };
    Ok(HealthConfig {
        test,
        interval: dur("interval")?,
        timeout: dur("timeout")?,
        start_period: dur("start-period")?,
        start_interval: dur("start-interval")?,
        retries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(v: &str, next: Option<Node>) -> Node {
        Node {
            value: v.into(),
            next: next.map(Box::new),
            ..Default::default()
        }
    }

    fn instr(name: &str, args: &[&str], flags: &[&str]) -> Node {
        let mut next = None;
        for a in args.iter().rev() {
            next = Some(word(a, next));
        }
        Node {
            value: name.into(),
            next: next.map(Box::new),
            flags: flags.iter().map(|s| s.to_string()).collect(),
            original: format!("{} {}", name.to_uppercase(), args.join(" ")),
            start_line: 3,
            end_line: 3,
            ..Default::default()
        }
    }

    #[test]
    fn from_with_name_and_platform() {
        let n = instr(
            "from",
            &["busybox", "AS", "Build"],
            &["--platform=linux/arm64"],
        );
        let Instruction::Stage(s) = parse_instruction(&n).unwrap() else {
            panic!()
        };
        assert_eq!(
            (s.name.as_str(), s.platform.as_str()),
            ("build", "linux/arm64")
        );
    }

    #[test]
    fn flag_errors_name_line_and_instruction() {
        let n = instr("copy", &["a", "b"], &["--frm=x"]);
        let e = parse_instruction(&n).unwrap_err();
        assert_eq!(
            e.to_string(),
            "dockerfile parse error on line 3: COPY: unknown flag: --frm"
        );
        let n = instr("copy", &["a", "b"], &["--link=maybe"]);
        assert!(parse_instruction(&n).is_err());
        let n = instr("copy", &["a", "b"], &["--from=a", "--from=b"]);
        assert!(
            parse_instruction(&n)
                .unwrap_err()
                .message
                .contains("duplicate flag")
        );
    }

    #[test]
    fn heredoc_words() {
        let h = parse_heredoc_word("<<-\"EOF\"").unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.chomp), ("EOF", false, true));
        let h = parse_heredoc_word("3<<EOF").unwrap();
        assert_eq!((h.file_descriptor, h.expand), (3, true));
        assert!(parse_heredoc_word("<<").is_none());
        assert!(parse_heredoc_word("file").is_none());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_go_duration("1m30s"), Some(90_000_000_000));
        assert_eq!(parse_go_duration("250ms"), Some(250_000_000));
        assert_eq!(parse_go_duration("x"), None);
    }
}
