//! Heredoc detection. BuildKit runs its shell-word lexer (with an empty environment, keeping
//! unset variables as written) over the instruction line and then over each `<<` word; so do
//! we, with [`crate::shell::Lex`].

use super::{MAX_NESTING, ParseErrorKind};
use crate::ast::Heredoc;
use crate::shell::{EnvList, Lex};

const ESCAPE: char = '\\';

/// The words of `input` as BuildKit's heredoc scan sees them: its shell-word lexer with an
/// empty environment, unset variables kept as written.
fn lex_words(input: &str, raw_quotes: bool, raw_escapes: bool) -> Result<Vec<String>, String> {
    // Go's text/scanner skips a leading byte-order mark.
    let input = input.strip_prefix('\u{feff}').unwrap_or(input);
    let mut lex = Lex::new(ESCAPE);
    lex.raw_quotes = raw_quotes;
    lex.raw_escapes = raw_escapes;
    lex.skip_unset_env = true;
    lex.max_depth = Some(MAX_NESTING);
    lex.process_words(input, &EnvList::default())
        .map_err(|e| e.message)
}

/// Parses one word such as `<<EOF`, `<<-'EOF'` or `3<<EOF`. `Ok(None)` when the word is not
/// a heredoc; an error when its quoting is broken.
pub fn parse_heredoc(src: &str) -> Result<Option<Heredoc>, ParseErrorKind> {
    // Equivalent of `^(\d*)<<(-?)\s*([^<]*)$`.
    let digits = src.len() - src.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let (fd_text, rest) = src.split_at(digits);
    let Some(rest) = rest.strip_prefix("<<") else {
        return Ok(None);
    };
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start_matches(['\t', '\n', '\x0c', '\r', ' ']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let fd = fd_text
        .parse::<u64>()
        .unwrap_or(if fd_text.is_empty() { 0 } else { u64::MAX });
    let heredoc_err = ParseErrorKind::Heredoc;
    let words = lex_words(rest, false, false).map_err(heredoc_err)?;
    let [word] = words.as_slice() else {
        return Ok(None);
    };
    let raw = lex_words(rest, true, false).map_err(heredoc_err)?;
    let [raw_word] = raw.as_slice() else {
        return Err(ParseErrorKind::Heredoc(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        )));
    };
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Heredoc {
        name: word.clone(),
        content: String::new(),
        expand: quotes(word) == quotes(raw_word),
        chomp,
        file_descriptor: u32::try_from(fd).unwrap_or(u32::MAX),
    }))
}

/// All heredocs a (shell-form) instruction line opens, in order, with empty content.
pub fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, ParseErrorKind> {
    // A line the lexer cannot split opens no heredocs (BuildKit ignores that error).
    let words = lex_words(line, true, true).unwrap_or_default();
    let mut docs = Vec::new();
    for word in words {
        if let Some(doc) = parse_heredoc(&word)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Removes leading tabs from every line, for `<<-` heredocs.
pub fn chomp_heredoc_content(src: &str) -> String {
    src.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}
