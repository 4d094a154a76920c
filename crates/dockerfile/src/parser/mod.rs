//! Dockerfile parser: bytes in, BuildKit-shaped syntax tree out.
//!
//! Follows BuildKit's `frontend/dockerfile/parser` behaviour line for line: parser directives,
//! escape tokens, line continuations (comments and blank lines inside them are skipped), the
//! per-instruction argument rules, `--flag` extraction and heredocs. Unknown instructions are
//! kept (BuildKit rejects them later, in instruction parsing); [`suggest_instruction`] gives the
//! "did you mean" hint for that error.
//!
//! Input that is not valid UTF-8 is decoded lossily, line by line.

mod directives;
mod dump;
mod heredoc;
mod lines;

use crate::ast::{Heredoc, Node};
use directives::DirectiveParser;

pub use dump::{dump, go_quote, suggest_instruction};
pub use heredoc::{chomp_heredoc_content, heredocs_from_line, parse_heredoc};

/// Longest physical line BuildKit's scanner accepts, in bytes, newline included.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// The escape character used when no `# escape=` directive is present.
pub const DEFAULT_ESCAPE: char = '\\';

/// Nesting limit for ONBUILD chains and `${...}` words, so hostile input cannot exhaust the stack.
const MAX_NESTING: usize = 64;

/// What [`parse`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseResult {
    /// The root node; its `children` are the instructions in file order.
    pub ast: Node,
    pub warnings: Vec<Warning>,
    /// The escape character in effect (`\` or `` ` ``).
    pub escape: char,
    /// Parser directives found at the top of the file, in order.
    pub directives: Vec<Directive>,
}

/// A parser directive such as `# syntax=docker/dockerfile:1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lower-cased name: `syntax`, `escape` or `check`.
    pub name: String,
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// A non-fatal problem found while parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub short: String,
    pub detail: Vec<String>,
    pub url: String,
    /// 1-based line the warning points at.
    pub line: usize,
}

/// A parse failure and where it happened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("dockerfile line {line}: {kind}")]
pub struct ParseError {
    /// 1-based first line of the failing instruction (or the line being read).
    pub line: usize,
    /// 1-based last line; equal to `line` for single-line problems.
    pub end_line: usize,
    pub kind: ParseErrorKind,
}

/// Why parsing failed; messages follow BuildKit's wording.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    #[error("only one {0} parser directive can be used")]
    DuplicateDirective(String),
    #[error("invalid escape token '{0}' does not match ` or \\")]
    InvalidEscape(String),
    #[error("{0} must have two arguments")]
    MissingValue(String),
    #[error("Syntax error - can't find = in {0}. Must be of the form: name=value")]
    MissingEquals(String),
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    NotStringArray,
    #[error("unterminated heredoc")]
    UnterminatedHeredoc,
    #[error("invalid heredoc: {0}")]
    Heredoc(String),
    #[error("file with no instructions")]
    NoInstructions,
    #[error("dockerfile line greater than max allowed size of {}", MAX_LINE_BYTES - 1)]
    LineTooLong,
    #[error("instruction nested too deeply")]
    TooDeep,
    /// Not produced by [`parse`]; for the instruction layer (see [`suggest_instruction`]).
    #[error("unknown instruction: {name}{}", suggestion.as_ref().map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    UnknownInstruction {
        name: String,
        suggestion: Option<String>,
    },
}

impl ParseError {
    fn at(line: usize, end_line: usize, kind: ParseErrorKind) -> Self {
        ParseError {
            line,
            end_line: end_line.max(line),
            kind,
        }
    }
}

/// Parser state that instruction parsing needs: the escape token.
pub(crate) struct Directives {
    pub(crate) escape: char,
    parser: DirectiveParser,
    found: Vec<Directive>,
}

impl Directives {
    fn new() -> Self {
        Directives {
            escape: DEFAULT_ESCAPE,
            parser: DirectiveParser::default(),
            found: Vec::new(),
        }
    }

    /// Feeds one line to the directive parser; true if it was a directive that took effect.
    fn possible_directive(&mut self, line: &str, line_no: usize) -> Result<bool, ParseErrorKind> {
        let Some(d) = self.parser.parse_line(line, line_no)? else {
            return Ok(false);
        };
        if d.name == "escape" {
            self.escape = match d.value.as_str() {
                "\\" => '\\',
                "`" => '`',
                other => return Err(ParseErrorKind::InvalidEscape(other.to_string())),
            };
        }
        self.found.push(d);
        Ok(true)
    }

    /// BuildKit's continuation rule: the escape token as the last non-blank character,
    /// unless it is itself escaped, continues the line. Returns the line without it.
    fn trim_continuation<'a>(&self, line: &'a str) -> (&'a str, bool) {
        let body = line.trim_end_matches([' ', '\t']);
        let Some(head) = body.strip_suffix(self.escape) else {
            return (line, true);
        };
        if head.is_empty() || !head.ends_with(self.escape) {
            (head, false)
        } else {
            (line, true)
        }
    }
}

/// Splits input into lines that keep their `\n`, enforcing BuildKit's scanner limit.
struct Scanner<'a> {
    data: &'a [u8],
    pos: usize,
    too_long: bool,
}

impl<'a> Scanner<'a> {
    fn next_line(&mut self) -> Option<String> {
        if self.too_long || self.pos >= self.data.len() {
            return None;
        }
        let rest = &self.data[self.pos..];
        let (token, limit) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => (&rest[..=i], MAX_LINE_BYTES),
            // Go's scanner needs one spare byte to see EOF after an unterminated last line.
            None => (rest, MAX_LINE_BYTES - 1),
        };
        if token.len() > limit {
            self.too_long = true;
            return None;
        }
        self.pos += token.len();
        Some(String::from_utf8_lossy(token).into_owned())
    }
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(line: &str) -> bool {
    line.trim_start().starts_with('#')
}

/// Parses a Dockerfile.
pub fn parse(source: &[u8]) -> Result<ParseResult, ParseError> {
    let source = source.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(source);
    let mut scanner = Scanner {
        data: source,
        pos: 0,
        too_long: false,
    };
    let mut d = Directives::new();
    let mut root = Node::default();
    let mut warnings = Vec::new();
    let mut comments: Vec<String> = Vec::new();
    let mut current = 0usize;

    while let Some(raw) = scanner.next_line() {
        if is_comment(&raw) {
            // BuildKit drops the first byte of the untrimmed line, not the `#`.
            let comment = raw
                .char_indices()
                .nth(1)
                .map_or("", |(i, _)| &raw[i..])
                .trim();
            if comment.is_empty() {
                comments.clear();
            } else {
                comments.push(comment.to_string());
            }
        }
        let (text, directive) = process_line(&mut d, &raw, true, current + 1)
            .map_err(|k| ParseError::at(current + 1, current + 1, k))?;
        if directive {
            comments.pop();
        }
        current += 1;
        let start = current;
        let (first, mut end_of_line) = d.trim_continuation(text);
        if end_of_line && first.is_empty() {
            continue;
        }
        let mut line = first.to_string();
        let mut empty_continuation = false;
        while !end_of_line {
            let Some(raw) = scanner.next_line() else {
                break;
            };
            let (text, _) = process_line(&mut d, &raw, false, current + 1)
                .map_err(|k| ParseError::at(current + 1, current + 1, k))?;
            current += 1;
            if is_comment(&raw) {
                continue;
            }
            if trim_newline(text).trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (text, eol) = d.trim_continuation(text);
            end_of_line = eol;
            line.push_str(text);
        }

        if empty_continuation {
            warnings.push(Warning {
                short: format!("Empty continuation line found in: {line}"),
                detail: vec![
                    "Empty continuation lines will become errors in a future release".to_string(),
                ],
                url: "https://docs.docker.com/go/dockerfile/rule/no-empty-continuation/"
                    .to_string(),
                line: current,
            });
        }

        let mut child = lines::node_from_line(&line, &d, std::mem::take(&mut comments), 0)
            .map_err(|k| ParseError::at(start, current, k))?;

        if can_contain_heredoc(&child) && line.contains("<<") {
            let docs = heredocs_from_line(&line).map_err(|k| ParseError::at(start, current, k))?;
            for mut doc in docs {
                doc.content =
                    read_heredoc_body(&mut scanner, &doc, &mut current).ok_or_else(|| {
                        ParseError::at(start, current, ParseErrorKind::UnterminatedHeredoc)
                    })?;
                child.heredocs.push(doc);
            }
        }

        child.start_line = start;
        child.end_line = current;
        if root.children.is_empty() {
            root.start_line = start;
        }
        root.end_line = current;
        root.children.push(child);
    }

    if root.children.is_empty() {
        return Err(ParseError::at(
            current,
            current,
            ParseErrorKind::NoInstructions,
        ));
    }
    if scanner.too_long {
        return Err(ParseError::at(
            current + 1,
            current + 1,
            ParseErrorKind::LineTooLong,
        ));
    }
    Ok(ParseResult {
        ast: root,
        warnings,
        escape: d.escape,
        directives: d.found,
    })
}

/// Trims the newline (and, for the first line of an instruction, leading blanks), feeds the
/// directive parser, and blanks out comment lines.
fn process_line<'a>(
    d: &mut Directives,
    raw: &'a str,
    strip_left: bool,
    line_no: usize,
) -> Result<(&'a str, bool), ParseErrorKind> {
    let mut token = trim_newline(raw);
    if strip_left {
        token = token.trim_start();
    }
    let directive = d.possible_directive(token, line_no)?;
    Ok((if is_comment(token) { "" } else { token }, directive))
}

/// Reads heredoc body lines up to the terminator; `None` if the input ends first.
fn read_heredoc_body(
    scanner: &mut Scanner<'_>,
    doc: &Heredoc,
    current: &mut usize,
) -> Option<String> {
    let mut content = doc.content.clone();
    while let Some(raw) = scanner.next_line() {
        *current += 1;
        let mut candidate = trim_newline(&raw);
        if doc.chomp {
            candidate = candidate.trim_start_matches('\t');
        }
        if candidate == doc.name {
            return Some(content);
        }
        content.push_str(&raw);
    }
    None
}

/// Heredocs are only collected for RUN, COPY and ADD in shell form (also under ONBUILD).
fn can_contain_heredoc(node: &Node) -> bool {
    let mut node = node;
    if node.value.eq_ignore_ascii_case("onbuild")
        && let Some(child) = node.next.as_ref().and_then(|n| n.children.first())
    {
        node = child;
    }
    let v = node.value.to_ascii_lowercase();
    matches!(v.as_str(), "run" | "copy" | "add")
        && !node.attributes.get("json").copied().unwrap_or(false)
}
