//! The syntax tree the parser produces, shaped like BuildKit's `parser.Node` so that the
//! instruction layer can follow BuildKit's rules one to one.

use std::collections::BTreeMap;

/// One node of the tree. The root's `children` are the instructions, in file order; an
/// instruction's arguments hang off `next` as a chain of word nodes (BuildKit's `Next`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    /// Lower-cased instruction keyword for an instruction node; the word for an argument node.
    pub value: String,
    /// The next argument (BuildKit's `Next`).
    pub next: Option<Box<Node>>,
    /// Instructions, for the root; for ONBUILD, the wrapped instruction is a child of `next`.
    pub children: Vec<Node>,
    /// Heredocs attached to this instruction, in order of appearance.
    pub heredocs: Vec<Heredoc>,
    /// Parser attributes: `"json"` is true when the arguments were written in JSON (exec) form.
    pub attributes: BTreeMap<String, bool>,
    /// The instruction's original text, continuation lines joined as BuildKit joins them.
    pub original: String,
    /// The `--flag` words before the arguments, as written (`--from=build`).
    pub flags: Vec<String>,
    /// 1-based first and last source line of the instruction.
    pub start_line: usize,
    pub end_line: usize,
    /// Comment lines directly above the instruction, without the `#`.
    pub prev_comment: Vec<String>,
}

/// A heredoc body (`<<EOF ... EOF`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Heredoc {
    /// The delimiter word, unquoted.
    pub name: String,
    /// The body, each line ending with a newline.
    pub content: String,
    /// False when the delimiter was quoted: the body is not expanded.
    pub expand: bool,
    /// True for `<<-`: leading tabs were stripped.
    pub chomp: bool,
    /// The file descriptor the heredoc is redirected to (0 unless written as `3<<EOF`).
    pub file_descriptor: u32,
}

/// A location in a Dockerfile, for errors and warnings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    pub start_line: usize,
    pub end_line: usize,
}
