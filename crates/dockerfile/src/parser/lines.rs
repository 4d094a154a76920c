//! Per-instruction argument parsing: splits a logical line into keyword, `--flags` and
//! arguments, then shapes the arguments into a `next` chain by the instruction's rule.

use std::collections::BTreeMap;

use super::{Directives, MAX_NESTING, ParseErrorKind};
use crate::ast::Node;

type Parsed = (Option<Box<Node>>, BTreeMap<String, bool>);

/// BuildKit's `reWhitespace`: `[\t\v\f\r ]+` (no newline, no Unicode blanks).
fn is_re_ws(c: char) -> bool {
    matches!(c, '\t' | '\x0b' | '\x0c' | '\r' | ' ')
}

/// `regexp.Split(s, n)` on runs of [`is_re_ws`]; `n < 0` means no limit.
pub(crate) fn split_ws(s: &str, n: isize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = s;
    loop {
        if n >= 0 && out.len() as isize == n - 1 {
            break;
        }
        let Some(start) = rest.find(is_re_ws) else {
            break;
        };
        let end = rest[start..]
            .find(|c| !is_re_ws(c))
            .map_or(rest.len(), |i| start + i);
        out.push(&rest[..start]);
        rest = &rest[end..];
    }
    out.push(rest);
    out
}

fn chain(values: impl IntoIterator<Item = String>) -> Option<Box<Node>> {
    let mut head: Option<Box<Node>> = None;
    let values: Vec<String> = values.into_iter().collect();
    for value in values.into_iter().rev() {
        head = Some(Box::new(Node {
            value,
            next: head,
            ..Node::default()
        }));
    }
    head
}

/// Builds an instruction node from one logical line.
pub(crate) fn node_from_line(
    line: &str,
    d: &Directives,
    comments: Vec<String>,
    depth: usize,
) -> Result<Node, ParseErrorKind> {
    if depth > MAX_NESTING {
        return Err(ParseErrorKind::TooDeep);
    }
    let (cmd, flags, args) = split_command(line, d);
    let value = cmd.to_lowercase();
    let (next, attributes) = match value.as_str() {
        "add" | "copy" | "volume" => parse_maybe_json_to_list(&args)?,
        "arg" => (chain(parse_words(&args, d)), BTreeMap::new()),
        "cmd" | "entrypoint" | "run" | "shell" => parse_maybe_json(&args)?,
        "env" => (parse_name_val(&args, "ENV", d)?, BTreeMap::new()),
        "label" => (parse_name_val(&args, "LABEL", d)?, BTreeMap::new()),
        "expose" | "from" => (parse_whitespace_list(&args), BTreeMap::new()),
        "healthcheck" => parse_health_config(&args)?,
        "maintainer" | "stopsignal" | "user" | "workdir" => (parse_string(&args), BTreeMap::new()),
        "onbuild" => (parse_sub_command(&args, d, depth)?, BTreeMap::new()),
        // Unknown instructions keep an empty argument; instruction parsing rejects them.
        _ => (Some(Box::default()), BTreeMap::new()),
    };
    Ok(Node {
        value,
        next,
        attributes,
        original: line.to_string(),
        flags,
        prev_comment: comments,
        ..Node::default()
    })
}

/// Splits off the keyword and the leading `--flag` words.
fn split_command(line: &str, d: &Directives) -> (String, Vec<String>, String) {
    let parts = split_ws(line.trim(), 2);
    let cmd = parts.first().copied().unwrap_or_default().to_string();
    let (args, flags) = match parts.get(1) {
        Some(rest) => extract_builder_flags(rest, d.escape),
        None => (String::new(), Vec::new()),
    };
    (cmd, flags, args.trim().to_string())
}

/// Reads `--flag` words (quotes removed, escapes applied) until the first word that is not a
/// flag or a bare `--`. Works byte by byte, as BuildKit does, so non-ASCII bytes in flags are
/// taken as Latin-1 characters.
fn extract_builder_flags(line: &str, escape: char) -> (String, Vec<String>) {
    let bytes = line.as_bytes();
    let rest_from = |pos: usize| String::from_utf8_lossy(&bytes[pos..]).into_owned();
    let is_space = |b: u8| char::from(b).is_whitespace();
    let esc = u8::try_from(escape).unwrap_or(b'\\');
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<u8> = None;
    let mut blank_ok = false;
    let mut pos = 0;
    while pos < bytes.len() {
        let mut ch = bytes[pos];
        if !in_word {
            if is_space(ch) {
                pos += 1;
                continue;
            }
            if ch != b'-' || bytes.get(pos + 1) != Some(&b'-') {
                return (rest_from(pos), words);
            }
            in_word = true;
        }
        if let Some(q) = quote {
            if ch == q {
                quote = None;
                pos += 1;
                continue;
            }
        } else {
            if is_space(ch) {
                if word == "--" {
                    return (rest_from(pos), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                in_word = false;
                blank_ok = false;
                pos += 1;
                continue;
            }
            if ch == b'\'' || ch == b'"' {
                quote = Some(ch);
                blank_ok = true;
                pos += 1;
                continue;
            }
        }
        if ch == esc {
            if pos + 1 == bytes.len() {
                // A trailing escape is dropped (and closes an open quote).
                quote = None;
                pos += 1;
                continue;
            }
            pos += 1;
            ch = bytes[pos];
        }
        word.push(char::from(ch));
        pos += 1;
    }
    if in_word && word != "--" && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    (String::new(), words)
}

/// Splits on whitespace keeping quotes and escapes in the words (they are removed later).
pub fn parse_words(rest: &str, d: &Directives) -> Vec<String> {
    parse_words_with(rest, d.escape)
}

pub(crate) fn parse_words_with(rest: &str, escape: char) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut chars = rest.chars().peekable();
    while let Some(ch) = chars.next() {
        if !in_word {
            if ch.is_whitespace() {
                continue;
            }
            in_word = true;
        }
        match quote {
            None => {
                if ch.is_whitespace() {
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    in_word = false;
                    blank_ok = false;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    quote = Some(ch);
                    blank_ok = true;
                }
                if ch == escape {
                    let Some(next) = chars.next() else {
                        continue; // a trailing escape is dropped
                    };
                    word.push(ch);
                    word.push(next);
                    continue;
                }
                word.push(ch);
            }
            Some(q) => {
                if ch == q {
                    quote = None;
                }
                if ch == escape && q != '\'' {
                    let Some(next) = chars.next() else {
                        quote = None;
                        continue;
                    };
                    word.push(ch);
                    word.push(next);
                    continue;
                }
                word.push(ch);
            }
        }
    }
    if in_word && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

/// ENV and LABEL: legacy `KEY value` or `k=v ...`, as (key, value, separator) triples.
fn parse_name_val(
    rest: &str,
    key: &str,
    d: &Directives,
) -> Result<Option<Box<Node>>, ParseErrorKind> {
    let words = parse_words(rest, d);
    let Some(first) = words.first() else {
        return Ok(None);
    };
    if !first.contains('=') {
        let parts = split_ws(rest, 2);
        let [k, v] = parts.as_slice() else {
            return Err(ParseErrorKind::MissingValue(key.to_string()));
        };
        return Ok(chain([k.to_string(), v.to_string(), String::new()]));
    }
    let mut values = Vec::with_capacity(words.len() * 3);
    for word in &words {
        let Some((k, v)) = word.split_once('=') else {
            return Err(ParseErrorKind::MissingEquals(super::go_quote(word)));
        };
        values.extend([k.to_string(), v.to_string(), "=".to_string()]);
    }
    Ok(chain(values))
}

fn parse_whitespace_list(rest: &str) -> Option<Box<Node>> {
    if rest.is_empty() {
        return None;
    }
    chain(split_ws(rest, -1).into_iter().map(str::to_string))
}

fn parse_string(rest: &str) -> Option<Box<Node>> {
    if rest.is_empty() {
        return None;
    }
    chain([rest.to_string()])
}

enum JsonOutcome {
    Parsed(Parsed),
    NotJson,
}

/// A JSON array of strings; a valid array holding anything else is an error.
fn parse_json(rest: &str) -> Result<JsonOutcome, ParseErrorKind> {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Ok(JsonOutcome::NotJson);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(rest) else {
        return Ok(JsonOutcome::NotJson);
    };
    let mut strings = Vec::with_capacity(values.len());
    for v in values {
        match v {
            serde_json::Value::String(s) => strings.push(s),
            _ => return Err(ParseErrorKind::NotStringArray),
        }
    }
    let attrs = BTreeMap::from([("json".to_string(), true)]);
    Ok(JsonOutcome::Parsed((chain(strings), attrs)))
}

fn parse_maybe_json(rest: &str) -> Result<Parsed, ParseErrorKind> {
    if rest.is_empty() {
        return Ok((None, BTreeMap::new()));
    }
    Ok(match parse_json(rest)? {
        JsonOutcome::Parsed(p) => p,
        JsonOutcome::NotJson => (parse_string(rest), BTreeMap::new()),
    })
}

fn parse_maybe_json_to_list(rest: &str) -> Result<Parsed, ParseErrorKind> {
    Ok(match parse_json(rest)? {
        JsonOutcome::Parsed(p) => p,
        JsonOutcome::NotJson => (parse_whitespace_list(rest), BTreeMap::new()),
    })
}

/// HEALTHCHECK: a type word (`CMD`, `NONE`, ...) followed by a maybe-JSON command. Works on
/// bytes as BuildKit does.
fn parse_health_config(rest: &str) -> Result<Parsed, ParseErrorKind> {
    let bytes = rest.as_bytes();
    let is_space = |b: &u8| char::from(*b).is_whitespace();
    let sep = bytes.iter().position(is_space).unwrap_or(bytes.len());
    if sep == 0 {
        return Ok((None, BTreeMap::new()));
    }
    let next = bytes[sep..]
        .iter()
        .position(|b| !is_space(b))
        .map_or(bytes.len(), |i| sep + i);
    let typ = String::from_utf8_lossy(&bytes[..sep]).into_owned();
    let cmd_text = String::from_utf8_lossy(&bytes[next..]).into_owned();
    let (cmd, attrs) = parse_maybe_json(&cmd_text)?;
    let node = Node {
        value: typ,
        next: cmd,
        ..Node::default()
    };
    Ok((Some(Box::new(node)), attrs))
}

/// ONBUILD: the rest of the line is itself an instruction, hung as a child of `next`.
fn parse_sub_command(
    rest: &str,
    d: &Directives,
    depth: usize,
) -> Result<Option<Box<Node>>, ParseErrorKind> {
    if rest.is_empty() {
        return Ok(None);
    }
    let child = node_from_line(rest, d, Vec::new(), depth + 1)?;
    Ok(Some(Box::new(Node {
        children: vec![child],
        ..Node::default()
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes_and_escapes() {
        let cases: [(&str, &[&str]); 8] = [
            ("foo", &["foo"]),
            ("foo bar", &["foo", "bar"]),
            ("foo\\ bar", &["foo\\ bar"]),
            ("foo=bar", &["foo=bar"]),
            ("foo bar 'abc xyz'", &["foo", "bar", "'abc xyz'"]),
            ("foo bar \"abc xyz\"", &["foo", "bar", "\"abc xyz\""]),
            ("àöû", &["àöû"]),
            ("föo bàr \"âbc xÿz\"", &["föo", "bàr", "\"âbc xÿz\""]),
        ];
        for (input, want) in cases {
            assert_eq!(parse_words_with(input, '\\'), want, "{input}");
        }
    }

    #[test]
    fn flags_stop_at_first_plain_word_or_double_dash() {
        let (rest, flags) = extract_builder_flags("--a=1 --b='x y' c d", '\\');
        assert_eq!(flags, ["--a=1", "--b=x y"]);
        assert_eq!(rest, "c d");
        let (rest, flags) = extract_builder_flags("--a -- --b", '\\');
        assert_eq!(flags, ["--a"]);
        assert_eq!(rest, " --b");
    }

    #[test]
    fn split_like_go_regexp() {
        assert_eq!(split_ws("a  b\tc", -1), ["a", "b", "c"]);
        assert_eq!(split_ws("a  b c", 2), ["a", "b c"]);
        assert_eq!(split_ws("a", 2), ["a"]);
        assert_eq!(split_ws("", 2), [""]);
    }
}
