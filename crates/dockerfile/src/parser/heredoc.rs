//! Heredoc detection. BuildKit runs its shell-word lexer (with an empty environment, keeping
//! unset variables as written) over the instruction line and then over each `<<` word; this
//! is a minimal copy of that lexer's word-splitting behaviour, enough to find the same words.

use super::{MAX_NESTING, ParseErrorKind};
use crate::ast::Heredoc;

const ESCAPE: char = '\\';

struct Lexer {
    chars: Vec<char>,
    pos: usize,
    raw_quotes: bool,
    raw_escapes: bool,
    /// Shared by nested `${...}` scans, as in BuildKit (a nested scan resets the outer word).
    word_buf: String,
    depth: usize,
}

#[derive(Default)]
struct Words {
    words: Vec<String>,
    in_word: bool,
}

type LexResult<T> = Result<T, String>;

impl Lexer {
    fn new(input: &str, raw_quotes: bool, raw_escapes: bool) -> Self {
        let mut chars: Vec<char> = input.chars().collect();
        // Go's text/scanner skips a leading byte-order mark.
        if chars.first() == Some(&'\u{feff}') {
            chars.remove(0);
        }
        Lexer {
            chars,
            pos: 0,
            raw_quotes,
            raw_escapes,
            word_buf: String::new(),
            depth: 0,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let c = self.peek();
        if c.is_some() {
            self.pos += 1;
        }
        c
    }

    fn add_char(&mut self, w: &mut Words, ch: char) {
        if ch.is_whitespace() {
            if w.in_word && !self.word_buf.is_empty() {
                w.words.push(std::mem::take(&mut self.word_buf));
                w.in_word = false;
            }
        } else {
            self.add_raw_char(w, ch);
        }
    }

    fn add_raw_char(&mut self, w: &mut Words, ch: char) {
        self.word_buf.push(ch);
        w.in_word = true;
    }

    fn finish(&mut self, mut w: Words) -> Vec<String> {
        if !self.word_buf.is_empty() {
            w.words.push(std::mem::take(&mut self.word_buf));
        }
        w.words
    }

    fn process_words(mut self) -> LexResult<Vec<String>> {
        let raw = self.raw_escapes;
        self.stop_on(None, raw).map(|(_, words)| words)
    }

    fn stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> LexResult<(String, Vec<String>)> {
        if self.depth > MAX_NESTING {
            return Err("substitution nested too deeply".to_string());
        }
        self.depth += 1;
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let out = self.stop_on_inner(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        out
    }

    fn stop_on_inner(&mut self, stop: Option<char>) -> LexResult<(String, Vec<String>)> {
        let mut result = String::new();
        self.word_buf.clear();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                let words = self.finish(words);
                return Ok((result, words));
            }
            match ch {
                '$' => {
                    let tmp = self.dollar()?;
                    result.push_str(&tmp);
                    for c in tmp.chars() {
                        self.add_char(&mut words, c);
                    }
                }
                '<' | '\'' | '"' => {
                    let tmp = match ch {
                        '<' => self.possible_heredoc(),
                        '\'' => self.single_quote()?,
                        _ => self.double_quote()?,
                    };
                    result.push_str(&tmp);
                    self.word_buf.push_str(&tmp);
                    words.in_word = true;
                }
                _ => {
                    self.next();
                    let mut ch = ch;
                    if ch == ESCAPE {
                        if self.raw_escapes {
                            self.add_raw_char(&mut words, ch);
                            result.push(ch);
                        }
                        let Some(escaped) = self.next() else {
                            break;
                        };
                        ch = escaped;
                        self.add_raw_char(&mut words, ch);
                    } else {
                        self.add_char(&mut words, ch);
                    }
                    result.push(ch);
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        let words = self.finish(words);
        Ok((result, words))
    }

    fn single_quote(&mut self) -> LexResult<String> {
        let mut out = String::new();
        let open = self.next();
        if self.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_string(),
                    );
                }
                Some('\'') => {
                    if self.raw_quotes {
                        out.push('\'');
                    }
                    return Ok(out);
                }
                Some(c) => out.push(c),
            }
        }
    }

    fn double_quote(&mut self) -> LexResult<String> {
        let mut out = String::new();
        let open = self.next();
        if self.raw_quotes {
            out.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_string(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.raw_quotes {
                        out.push('"');
                    }
                    return Ok(out);
                }
                Some('$') => out.push_str(&self.dollar()?),
                Some(mut ch) => {
                    self.next();
                    if ch == ESCAPE {
                        if self.raw_escapes {
                            out.push(ch);
                        }
                        match self.peek() {
                            None => continue,
                            Some(c @ ('"' | '$' | ESCAPE)) => {
                                self.next();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    out.push(ch);
                }
            }
        }
    }

    /// `$name` / `${...}` with every variable unset: the text is kept as written.
    fn dollar(&mut self) -> LexResult<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.name();
            return Ok(format!("${name}"));
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".to_string()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_string()),
            Some(_) => {}
        }
        let name = self.name();
        let ch = self.next();
        let mut chs: String = ch.map_or('\u{fffd}', |c| c).to_string();
        match ch {
            Some('}') => Ok(format!("${{{name}}}")),
            Some(c @ (':' | '+' | '-' | '?' | '#' | '%')) => {
                let mut modifier = c;
                let null_is_unset = c == ':';
                if null_is_unset {
                    let n = self.next();
                    chs.push(n.map_or('\u{fffd}', |c| c));
                    modifier = n.unwrap_or('\u{fffd}');
                }
                let raw = modifier == '#' || modifier == '%';
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let (word, _) = self.stop_on(Some('}'), raw).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '}'".to_string()
                    } else {
                        e
                    }
                })?;
                Ok(format!("${{{name}{chs}{word}}}"))
            }
            Some('/') => {
                if self.peek() == Some('/') {
                    self.next();
                }
                let missing = |lx: &Lexer, e: String, msg: &str| {
                    if lx.peek().is_none() {
                        msg.to_string()
                    } else {
                        e
                    }
                };
                let (pattern, _) = self
                    .stop_on(Some('/'), true)
                    .map_err(|e| missing(self, e, "syntax error: missing '/' in ${}"))?;
                let (replacement, _) = self
                    .stop_on(Some('}'), true)
                    .map_err(|e| missing(self, e, "syntax error: missing '}'"))?;
                Ok(format!("${{{name}/{pattern}/{replacement}}}"))
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(d) = self.peek().filter(|c| c.is_numeric()) {
                    self.next();
                    name.push(d);
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphabetic() && !ch.is_numeric() && ch != '_' {
                break;
            }
            self.next();
            name.push(ch);
        }
        name
    }

    fn possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_string();
        }
        self.next();
        let mut out = "<<".to_string();
        while let Some(c @ ('\t' | '\r' | ' ')) = self.peek() {
            out.push(c);
            self.next();
        }
        out
    }
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
    let words = Lexer::new(rest, false, false)
        .process_words()
        .map_err(heredoc_err)?;
    let [word] = words.as_slice() else {
        return Ok(None);
    };
    let raw = Lexer::new(rest, true, false)
        .process_words()
        .map_err(heredoc_err)?;
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
    let words = Lexer::new(line, true, true)
        .process_words()
        .unwrap_or_default();
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
