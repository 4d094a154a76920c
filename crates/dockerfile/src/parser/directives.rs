//! Parser directives (`# syntax=`, `# escape=`, `# check=`): only recognised in the leading
//! run of comment lines; the first line that is not a directive ends the run for good.

use super::{Directive, ParseErrorKind};

const VALID: [&str; 3] = ["syntax", "escape", "check"];

/// Go RE2's `\s`: ASCII blanks without `\v`.
fn re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\x0c' | '\r' | ' ')
}

#[derive(Debug, Default)]
pub(crate) struct DirectiveParser {
    seen: Vec<String>,
    done: bool,
}

impl DirectiveParser {
    /// Looks at one newline-trimmed line; `Ok(None)` when it is not a directive.
    pub(crate) fn parse_line(
        &mut self,
        line: &str,
        line_no: usize,
    ) -> Result<Option<Directive>, ParseErrorKind> {
        if self.done {
            return Ok(None);
        }
        let Some(rest) = line.strip_prefix('#') else {
            self.done = true;
            return Ok(None);
        };
        let Some((name, value)) = split_directive(rest.trim_start()) else {
            self.done = true;
            return Ok(None);
        };
        let name = name.to_ascii_lowercase();
        if !VALID.contains(&name.as_str()) {
            self.done = true;
            return Ok(None);
        }
        if self.seen.contains(&name) {
            return Err(ParseErrorKind::DuplicateDirective(name));
        }
        self.seen.push(name.clone());
        Ok(Some(Directive {
            name,
            value: value.to_string(),
            line: line_no,
        }))
    }
}

/// Matches `^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` the way a backtracking engine would.
fn split_directive(s: &str) -> Option<(&str, &str)> {
    let name_len = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(s.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = s.split_at(name_len);
    let rest = rest.trim_start_matches(re_space).strip_prefix('=')?;
    if rest.contains('\n') {
        return None;
    }
    let trimmed = rest.trim_start_matches(re_space);
    let value = trimmed.trim_end_matches(re_space);
    if !value.is_empty() {
        return Some((name, value));
    }
    // Only blanks after `=`: the lazy group still has to take one character, the last one.
    let last = rest.char_indices().last()?.0;
    Some((name, &rest[last..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directive_shapes() {
        assert_eq!(split_directive("escape=`"), Some(("escape", "`")));
        assert_eq!(split_directive("syntax = a b  "), Some(("syntax", "a b")));
        assert_eq!(split_directive("check= "), Some(("check", " ")));
        assert_eq!(split_directive("check="), None);
        assert_eq!(split_directive("1x=y"), None);
        assert_eq!(split_directive("x y=z"), None);
    }
}
