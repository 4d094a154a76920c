//! Checks BuildKit runs before dispatching: on the parser's warnings, on each instruction as it
//! is parsed, on the stages as a whole and on the global ARGs' defaults.

use super::{Linter, rules};
use crate::ast::Node;
use crate::convert::ConvertOptions;
use crate::instructions::node_args;
use crate::parser::ParseResult;
use crate::shell::{EnvList, Lex};

/// Runs the checks that need no base image and no dispatch state.
pub(crate) fn run(parsed: &ParseResult, opts: &ConvertOptions, lint: &mut Linter) {
    for w in &parsed.warnings {
        if w.url == rules::NO_EMPTY_CONTINUATION.url {
            lint.run(
                &rules::NO_EMPTY_CONTINUATION,
                w.line,
                w.line,
                rules::no_empty_continuation(),
            );
        }
    }
    let nodes = &parsed.ast.children;
    let mut stage_names: Vec<String> = Vec::new();
    for n in nodes {
        instruction(n, lint);
        if n.value == "from"
            && let [_, as_, name] = node_args(n).as_slice()
            && as_.eq_ignore_ascii_case("as")
        {
            stage_names.push(name.to_lowercase());
            stage_name(n, &name.to_lowercase(), &stage_names, lint);
        }
    }
    casing(nodes, lint);
    default_args_in_from(parsed, opts, lint);
}

/// The keyword as written (the node's value is lower-cased by the parser).
pub(crate) fn keyword(n: &Node) -> &str {
    n.original.split_whitespace().next().unwrap_or(&n.value)
}

/// Checks made while parsing one instruction.
fn instruction(n: &Node, lint: &mut Linter) {
    let (start, end) = (n.start_line, n.end_line);
    match n.value.as_str() {
        "maintainer" => lint.run(
            &rules::MAINTAINER_DEPRECATED,
            start,
            end,
            rules::maintainer_deprecated(),
        ),
        "from" => {
            let args = node_args(n);
            if args.len() == 3 && args[2] != args[2].to_lowercase() {
                lint.run(
                    &rules::STAGE_NAME_CASING,
                    start,
                    end,
                    rules::stage_name_casing(&args[2]),
                );
            }
            let from = keyword(n);
            // A mixed-case FROM is ConsistentInstructionCasing's business, not this rule's.
            let mismatch = args.len() >= 3
                && if from == from.to_lowercase() {
                    args[1] != args[1].to_lowercase()
                } else if from == from.to_uppercase() {
                    args[1] != args[1].to_uppercase()
                } else {
                    false
                };
            if mismatch {
                lint.run(
                    &rules::FROM_AS_CASING,
                    start,
                    end,
                    rules::from_as_casing(from, &args[1]),
                );
            }
            if args.len() == 3 && args[1].eq_ignore_ascii_case("as") {
                description(n, "FROM", &[args[2].to_lowercase()], lint);
            }
        }
        "arg" => {
            let keys: Vec<String> = node_args(n)
                .iter()
                .map(|a| a.split_once('=').map_or(a.as_str(), |(k, _)| k).to_string())
                .collect();
            description(n, "ARG", &keys, lint);
        }
        _ => {}
    }
}

/// InvalidDefinitionDescription: a comment right above a stage or ARG should start with its
/// name.
fn description(n: &Node, instruction: &str, keys: &[String], lint: &mut Linter) {
    let (Some(last), Some(first_key)) = (n.prev_comment.last(), keys.first()) else {
        return;
    };
    let first_word = last.split(' ').next().unwrap_or_default();
    if keys.iter().any(|k| k == first_word) {
        return;
    }
    let example = if keys.len() > 1 {
        "<arg_key>"
    } else {
        first_key
    };
    lint.run(
        &rules::INVALID_DEFINITION_DESCRIPTION,
        n.start_line,
        n.end_line,
        rules::invalid_definition_description(instruction, example),
    );
}

/// ReservedStageName and DuplicateStageName; `seen` ends with `name`.
fn stage_name(n: &Node, name: &str, seen: &[String], lint: &mut Linter) {
    let (start, end) = (n.start_line, n.end_line);
    if name == "context" || name == "scratch" {
        lint.run(
            &rules::RESERVED_STAGE_NAME,
            start,
            end,
            rules::reserved_stage_name(name),
        );
    }
    if seen[..seen.len() - 1].iter().any(|s| s == name) {
        lint.run(
            &rules::DUPLICATE_STAGE_NAME,
            start,
            end,
            rules::duplicate_stage_name(name),
        );
    }
}

/// ConsistentInstructionCasing over the instructions from the first FROM on: each keyword must
/// be all-lower or all-upper, matching the majority (ties count as upper, as in BuildKit).
fn casing(nodes: &[Node], lint: &mut Linter) {
    let Some(first) = nodes.iter().position(|n| n.value == "from") else {
        return;
    };
    let staged = &nodes[first..];
    let (mut lower, mut upper) = (0, 0);
    for n in staged {
        let k = keyword(n);
        if k == k.to_lowercase() {
            lower += 1;
        } else if k == k.to_uppercase() {
            upper += 1;
        }
    }
    let majority_lower = lower > upper;
    for n in staged {
        let k = keyword(n);
        let casing = if majority_lower && k != k.to_lowercase() {
            "lowercase"
        } else if !majority_lower && k != k.to_uppercase() {
            "uppercase"
        } else {
            continue;
        };
        lint.run(
            &rules::CONSISTENT_INSTRUCTION_CASING,
            n.start_line,
            n.end_line,
            rules::consistent_instruction_casing(k, casing),
        );
    }
}

/// InvalidDefaultArgInFrom: with only the ARGs' defaults (no --build-arg), every base name
/// must still be a valid image reference.
fn default_args_in_from(parsed: &ParseResult, opts: &ConvertOptions, lint: &mut Linter) {
    let Ok((stages, meta_args)) = crate::instructions::parse(&parsed.ast) else {
        return;
    };
    let target = opts
        .target
        .clone()
        .unwrap_or_else(|| stages.last().map(|s| s.name.clone()).unwrap_or_default());
    let shlex = Lex::new(parsed.escape);
    let mut env: Vec<String> = crate::convert::default_platform_args(opts, &target)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for (_, args) in &meta_args {
        for kp in args {
            let Some(v) = &kp.value else { continue };
            let Ok(v) = shlex.process_word(v, &EnvList::from_slice(&env)) else {
                return;
            };
            env.retain(|e| e.split('=').next() != Some(kp.key.as_str()));
            env.push(format!("{}={v}", kp.key));
        }
    }
    let env = EnvList::from_slice(&env);
    for st in &stages {
        let Ok(base) = shlex.process_word(&st.base_name, &env) else {
            return;
        };
        if !valid_reference(&base) {
            lint.run(
                &rules::INVALID_DEFAULT_ARG_IN_FROM,
                st.start_line,
                st.end_line,
                rules::invalid_default_arg_in_from(&st.base_name),
            );
        }
    }
}

/// distribution/reference's grammar, enough to tell a valid `name[:tag][@digest]`.
pub(crate) fn valid_reference(r: &str) -> bool {
    let (rest, digest) = match r.split_once('@') {
        Some((n, d)) => (n, Some(d)),
        None => (r, None),
    };
    if let Some(d) = digest {
        let Some((alg, hex)) = d.split_once(':') else {
            return false;
        };
        let alg_ok = !alg.is_empty()
            && alg
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+._-".contains(c));
        if !alg_ok || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            return false;
        }
    }
    let slash = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[slash..].rfind(':') {
        Some(i) => (&rest[..slash + i], Some(&rest[slash + i + 1..])),
        None => (rest, None),
    };
    if let Some(t) = tag {
        let mut cs = t.chars();
        let first_ok = cs
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        if !first_ok || t.len() > 128 || !cs.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
        {
            return false;
        }
    }
    if name.is_empty() || name.len() > 255 {
        return false;
    }
    let mut parts: Vec<&str> = name.split('/').collect();
    if parts.len() > 1 {
        let first = parts[0];
        if first.contains('.') || first.contains(':') || first == "localhost" {
            if !valid_domain(first) {
                return false;
            }
            parts.remove(0);
        }
    }
    parts.iter().all(|p| valid_component(p))
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = match d.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (d, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.chars().all(|c| c.is_ascii_digit())) {
        return false;
    }
    (host.starts_with('[') && host.ends_with(']'))
        || (!host.is_empty()
            && host.split('.').all(|l| {
                !l.is_empty()
                    && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            }))
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_component(p: &str) -> bool {
    let b = p.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &p[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        for ok in [
            "busybox",
            "busybox:1.36",
            "localhost:5000/busybox:latest",
            "docker.io/library/alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "a__b/c-d--e",
            "scratch",
        ] {
            assert!(valid_reference(ok), "{ok}");
        }
        for bad in [
            "",
            "busybox:",
            "Busybox",
            "a/-b",
            ":tag",
            "a@sha256:xyz",
            "a b",
        ] {
            assert!(!valid_reference(bad), "{bad}");
        }
    }
}
