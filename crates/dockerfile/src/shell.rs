//! Shell-word expansion as BuildKit's Dockerfile frontend does it (`shell/lex.go`): quotes,
//! escapes, `$var` / `${var}` with the POSIX-ish modifiers, and word splitting after expansion.
//! This is not a shell: only what Dockerfile instructions need, with BuildKit's exact quirks.

use std::collections::{BTreeMap, BTreeSet};

/// Where expansion looks variables up.
pub trait EnvGetter {
    /// The value of `key`, or `None` when it is not set (set-but-empty is `Some("")`).
    fn get(&self, key: &str) -> Option<String>;
    /// The names in definition order (duplicates allowed), for checks that list them.
    fn keys(&self) -> Vec<String>;
}

/// `KEY=VALUE` pairs; a later definition of a key wins, as in BuildKit's `EnvsFromSlice`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvList {
    map: BTreeMap<String, String>,
    keys: Vec<String>,
}

impl EnvList {
    /// Builds the list from `KEY=VALUE` strings (a missing `=` means an empty value).
    pub fn from_slice<S: AsRef<str>>(env: &[S]) -> EnvList {
        let mut list = EnvList::default();
        for e in env {
            let (k, v) = e.as_ref().split_once('=').unwrap_or((e.as_ref(), ""));
            list.keys.push(k.to_string());
            list.map.insert(k.to_string(), v.to_string());
        }
        list
    }
}

impl EnvGetter for EnvList {
    fn get(&self, key: &str) -> Option<String> {
        self.map.get(key).cloned()
    }
    fn keys(&self) -> Vec<String> {
        self.keys.clone()
    }
}

impl EnvGetter for BTreeMap<String, String> {
    fn get(&self, key: &str) -> Option<String> {
        BTreeMap::get(self, key).cloned()
    }
    fn keys(&self) -> Vec<String> {
        BTreeMap::keys(self).cloned().collect()
    }
}

/// An expansion failure; the message says what was wrong and in which word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("failed to process {word:?}: {message}")]
pub struct ShellError {
    pub word: String,
    pub message: String,
}

/// What one expansion produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessWordResult {
    /// The expanded word, spaces kept.
    pub result: String,
    /// The expansion split into words (quotes and escapes protect spaces).
    pub words: Vec<String>,
    /// Variables that were looked up and found.
    pub matched: BTreeSet<String>,
    /// Variables that were looked up and not set.
    pub unmatched: BTreeSet<String>,
}

/// The expander. `escape` is the Dockerfile's escape character (`\` or `` ` ``).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lex {
    pub escape: char,
    /// Keep quote characters in the result.
    pub raw_quotes: bool,
    /// Keep escape characters in the result.
    pub raw_escapes: bool,
    /// Treat quotes as ordinary characters.
    pub skip_process_quotes: bool,
    /// Leave references to unset variables as written.
    pub skip_unset_env: bool,
    /// Refuse `${...}` nested deeper than this (the parser's heredoc scan bounds its recursion).
    pub(crate) max_depth: Option<usize>,
}

impl Lex {
    pub fn new(escape: char) -> Lex {
        Lex {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_process_quotes: false,
            skip_unset_env: false,
            max_depth: None,
        }
    }

    /// Expands `word`, keeping spaces.
    pub fn process_word(&self, word: &str, env: &dyn EnvGetter) -> Result<String, ShellError> {
        Ok(self.process(word, env)?.result)
    }

    /// Expands `word` and splits the result into words.
    pub fn process_words(
        &self,
        word: &str,
        env: &dyn EnvGetter,
    ) -> Result<Vec<String>, ShellError> {
        Ok(self.process(word, env)?.words)
    }

    /// Expands `word`, reporting the variables used and the ones that were not set.
    pub fn process_word_with_matches(
        &self,
        word: &str,
        env: &dyn EnvGetter,
    ) -> Result<ProcessWordResult, ShellError> {
        self.process(word, env)
    }

    fn process(&self, word: &str, env: &dyn EnvGetter) -> Result<ProcessWordResult, ShellError> {
        let mut sw = ShellWord {
            lex: self,
            chars: word.chars().collect(),
            pos: 0,
            env,
            raw_escapes: self.raw_escapes,
            words_buffer: String::new(),
            depth: 0,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        match sw.process_stop_on(None, self.raw_escapes) {
            Ok((result, words)) => Ok(ProcessWordResult {
                result,
                words,
                matched: sw.matched,
                unmatched: sw.unmatched,
            }),
            Err(message) => Err(ShellError {
                word: word.to_string(),
                message,
            }),
        }
    }
}

struct ShellWord<'a> {
    lex: &'a Lex,
    chars: Vec<char>,
    pos: usize,
    env: &'a dyn EnvGetter,
    raw_escapes: bool,
    // Shared by nested scans like BuildKit's: an inner `${x:-...}` resets the outer word's
    // pending characters, and matching that keeps word splitting identical.
    words_buffer: String,
    /// Nesting of scans, for `Lex::max_depth`.
    depth: usize,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

#[derive(Default)]
struct Words {
    words: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, buf: &mut String, ch: char) {
        if ch.is_whitespace() && self.in_word {
            if !buf.is_empty() {
                self.words.push(std::mem::take(buf));
                self.in_word = false;
            }
        } else if !ch.is_whitespace() {
            self.add_raw_char(buf, ch);
        }
    }
    fn add_raw_char(&mut self, buf: &mut String, ch: char) {
        buf.push(ch);
        self.in_word = true;
    }
    fn add_string(&mut self, buf: &mut String, s: &str) {
        for ch in s.chars() {
            self.add_char(buf, ch);
        }
    }
    fn add_raw_string(&mut self, buf: &mut String, s: &str) {
        buf.push_str(s);
        self.in_word = true;
    }
    fn finish(mut self, buf: &mut String) -> Vec<String> {
        if !buf.is_empty() {
            self.words.push(std::mem::take(buf));
            self.in_word = false;
        }
        self.words
    }
}

type Res<T> = Result<T, String>;

impl ShellWord<'_> {
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

    /// Scans until `stop` (consumed) or the end; `None` scans to the end.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Res<(String, Vec<String>)> {
        if self.lex.max_depth.is_some_and(|max| self.depth > max) {
            return Err("substitution nested too deeply".into());
        }
        self.depth += 1;
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let r = self.scan(stop);
        self.raw_escapes = saved;
        self.depth -= 1;
        r
    }

    fn scan(&mut self, stop: Option<char>) -> Res<(String, Vec<String>)> {
        let mut result = String::new();
        self.words_buffer.clear();
        let mut words = Words::default();
        let quotes = !self.lex.skip_process_quotes;
        while let Some(ch) = self.peek() {
            if stop == Some(ch) {
                self.next();
                let mut buf = std::mem::take(&mut self.words_buffer);
                let w = words.finish(&mut buf);
                self.words_buffer = buf;
                return Ok((result, w));
            }
            let special = match ch {
                '$' => Some(self.process_dollar()?),
                '<' => Some(self.process_possible_heredoc()),
                '\'' if quotes => Some(self.process_single_quote()?),
                '"' if quotes => Some(self.process_double_quote()?),
                _ => None,
            };
            if let Some(tmp) = special {
                result.push_str(&tmp);
                let mut buf = std::mem::take(&mut self.words_buffer);
                if ch == '$' {
                    words.add_string(&mut buf, &tmp);
                } else {
                    words.add_raw_string(&mut buf, &tmp);
                }
                self.words_buffer = buf;
                continue;
            }
            self.next();
            let mut buf = std::mem::take(&mut self.words_buffer);
            let mut out = ch;
            if ch == self.lex.escape {
                if self.raw_escapes {
                    words.add_raw_char(&mut buf, ch);
                    result.push(ch);
                }
                match self.next() {
                    None => {
                        self.words_buffer = buf;
                        break;
                    }
                    Some(c) => {
                        out = c;
                        words.add_raw_char(&mut buf, c);
                    }
                }
            } else {
                words.add_char(&mut buf, ch);
            }
            self.words_buffer = buf;
            result.push(out);
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        let mut buf = std::mem::take(&mut self.words_buffer);
        let w = words.finish(&mut buf);
        self.words_buffer = buf;
        Ok((result, w))
    }

    fn process_single_quote(&mut self) -> Res<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .into(),
                    );
                }
                Some('\'') => {
                    if self.lex.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(c) => result.push(c),
            }
        }
    }

    fn process_double_quote(&mut self) -> Res<String> {
        let mut result = String::new();
        let open = self.next();
        if self.lex.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .into(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.lex.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let v = self.process_dollar()?;
                    result.push_str(&v);
                }
                Some(_) => {
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.lex.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // A trailing escape is dropped; the missing quote is reported next.
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.lex.escape => {
                                self.next();
                                ch = c;
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Res<String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err("syntax error: missing '}'".into()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".into()),
            _ => {}
        }
        let name = self.process_name();
        let first = self.next();
        let mut chs: String = first.map_or('\u{FFFD}'.to_string(), String::from);
        match first {
            Some('}') => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.lex.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            Some(':' | '+' | '-' | '?' | '#' | '%') => {
                let mut ch = first;
                let null_is_unset = ch == Some(':');
                if null_is_unset {
                    ch = self.next();
                    chs.push(ch.unwrap_or('\u{FFFD}'));
                }
                let raw = matches!(ch, Some('#' | '%'));
                if null_is_unset && raw {
                    return Err(format!("unsupported modifier ({chs}) in substitution"));
                }
                let word = match self.process_stop_on(Some('}'), raw) {
                    Ok((w, _)) => w,
                    Err(e) if self.peek().is_none() => {
                        let _ = e;
                        return Err("syntax error: missing '}'".into());
                    }
                    Err(e) => return Err(e),
                };
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}{chs}{word}}}"));
                }
                let empty = value
                    .as_deref()
                    .is_none_or(|v| null_is_unset && v.is_empty());
                match ch {
                    Some('-') => Ok(if empty {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    Some('+') => Ok(if empty { String::new() } else { word }),
                    Some('?') => {
                        let default = match &value {
                            None => "is not allowed to be unset",
                            Some(v) if null_is_unset && v.is_empty() => {
                                "is not allowed to be empty"
                            }
                            Some(v) => return Ok(v.clone()),
                        };
                        let msg = if word.is_empty() { default } else { &word };
                        Err(format!("{name}: {msg}"))
                    }
                    Some(c @ ('%' | '#')) => {
                        let value = value.unwrap_or_default();
                        let (pattern, greedy) = match word.strip_prefix(c) {
                            Some(rest) => (rest.to_string(), true),
                            None => (word, false),
                        };
                        if c == '%' {
                            trim_suffix(&pattern, &value, greedy)
                        } else {
                            trim_prefix(&pattern, &value, greedy)
                        }
                    }
                    _ => Err(format!("unsupported modifier ({chs}) in substitution")),
                }
            }
            Some('/') => {
                let replace_all = self.peek() == Some('/');
                if replace_all {
                    self.next();
                }
                let pattern = match self.process_stop_on(Some('/'), true) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => {
                        return Err("syntax error: missing '/' in ${}".into());
                    }
                    Err(e) => return Err(e),
                };
                let replacement = match self.process_stop_on(Some('}'), true) {
                    Ok((w, _)) => w,
                    Err(_) if self.peek().is_none() => {
                        return Err("syntax error: missing '}'".into());
                    }
                    Err(e) => return Err(e),
                };
                let value = self.get_env(&name);
                if self.lex.skip_unset_env && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let value = value.unwrap_or_default();
                let re = shell_pattern_regex(&pattern, true, false)
                    .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
                if replace_all {
                    // Like Go's ReplaceAllString, `$1`-style references in the
                    // replacement are expanded.
                    Ok(re.replace_all(&value, replacement.as_str()).into_owned())
                } else if let Some(m) = re.find(&value) {
                    Ok(format!(
                        "{}{}{}",
                        &value[..m.start()],
                        replacement,
                        &value[m.end()..]
                    ))
                } else {
                    Ok(value)
                }
            }
            _ => Err(format!("unsupported modifier ({chs}) in substitution")),
        }
    }

    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_numeric() {
                while let Some(c) = self.peek().filter(|c| c.is_numeric()) {
                    name.push(c);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && is_special_param(ch) {
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

    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut result = String::from("<<");
        while let Some(c) = self.peek().filter(|c| matches!(c, '\t' | '\r' | ' ')) {
            result.push(c);
            self.next();
        }
        result
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        match self.env.get(name) {
            Some(v) => {
                self.matched.insert(name.to_string());
                Some(v)
            }
            None => {
                self.unmatched.insert(name.to_string());
                None
            }
        }
    }
}

fn is_special_param(c: char) -> bool {
    matches!(c, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0')
}

/// Turns a shell pattern (`*`, `?`, `\` escapes; no brackets) into a regex.
fn shell_pattern_regex(pattern: &str, greedy: bool, anchored: bool) -> Res<regex::Regex> {
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let mut chars = pattern.chars().peekable();
    while let Some(tok) = chars.next() {
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                // `\}` and `\/` only protect the ${} syntax; they are not part of the pattern.
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                match chars.next() {
                    Some(c @ ('*' | '?' | '\\')) => {
                        out.push('\\');
                        out.push(c);
                    }
                    Some(c) => return Err(format!("invalid escape '\\{c}'")),
                    None => return Err("invalid escape '\\'".into()),
                }
            }
            '[' | ']' | '{' | '}' | '.' | '+' | '(' | ')' | '|' | '^' | '$' => {
                out.push('\\');
                out.push(tok);
            }
            _ => out.push(tok),
        }
    }
    regex::Regex::new(&out).map_err(|e| e.to_string())
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Res<String> {
    let re = shell_pattern_regex(pattern, greedy, true)
        .map_err(|e| format!("invalid pattern ({pattern}) in substitution: {e}"))?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_string(),
        None => value.to_string(),
    })
}

/// Reverses a pattern while keeping each `\x` escape in front of its character.
fn reverse_pattern(pattern: &str) -> String {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = vec!['\0'; p.len()];
    let last = p.len().saturating_sub(1);
    let mut i = 0;
    while i < p.len() {
        let tok = p[i];
        let at = last - i;
        if tok == '\\' && i != last {
            out[at - 1] = tok;
            out[at] = p[i + 1];
            i += 2;
        } else {
            out[at] = tok;
            i += 1;
        }
    }
    out.into_iter().collect()
}

/// A regex cannot find the shortest rightmost match, so both sides are reversed and the
/// suffix becomes a prefix.
fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Res<String> {
    let rp = reverse_pattern(pattern);
    let rv: String = value.chars().rev().collect();
    Ok(trim_prefix(&rp, &rv, greedy)?.chars().rev().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverses_patterns_keeping_escapes() {
        assert_eq!(reverse_pattern("a\\*c"), "c\\*a");
        assert_eq!(reverse_pattern("\\\\\\ab"), "b\\a\\\\");
        assert_eq!(reverse_pattern("ab\\"), "\\ba");
        assert_eq!(reverse_pattern("\\\\b"), "b\\\\");
    }

    #[test]
    fn rejects_bad_pattern_escapes() {
        for p in ["\\", "\\x", "\\\\\\"] {
            assert!(shell_pattern_regex(p, true, true).is_err(), "{p}");
        }
    }

    #[test]
    fn reports_matches() {
        let env = EnvList::from_slice(&["FOO=xxx", "BAR="]);
        let r = Lex::new('\\')
            .process_word_with_matches("${FOO-a} ${BAR-b} ${BAZ-c}", &env)
            .unwrap();
        assert_eq!(r.result, "xxx  c");
        assert_eq!(r.matched.len(), 2);
        assert!(r.unmatched.contains("BAZ"));
    }

    #[test]
    fn mandatory_vars() {
        let lex = Lex::new('\\');
        let unset = EnvList::from_slice(&["ARG=x"]);
        let err = lex
            .process_word("${VAR:?message here$ARG}", &unset)
            .unwrap_err();
        assert!(err.to_string().contains("message herex"));
        let empty = EnvList::from_slice(&["VAR=", "ARG=x"]);
        assert_eq!(lex.process_word("${VAR?m}", &empty).unwrap(), "");
    }
}
