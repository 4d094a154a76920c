//! BuildKit's `Node.Dump` s-expression format, Go's `strconv.Quote`, and the "did you mean"
//! instruction suggestion.

use crate::ast::Node;

/// Prints the tree as BuildKit's parser tests expect: one `(instruction args...)` line per
/// instruction for the root, without a trailing newline.
pub fn dump(node: &Node) -> String {
    let mut out = node.value.to_lowercase();
    if !node.flags.is_empty() {
        let flags: Vec<String> = node.flags.iter().map(|f| go_quote(f)).collect();
        out.push_str(" [");
        out.push_str(&flags.join(" "));
        out.push(']');
    }
    for child in &node.children {
        out.push('(');
        out.push_str(&dump(child));
        out.push_str(")\n");
    }
    let mut next = node.next.as_deref();
    while let Some(n) = next {
        out.push(' ');
        if n.children.is_empty() {
            out.push_str(&go_quote(&n.value));
        } else {
            out.push_str(&dump(n));
        }
        next = n.next.as_deref();
    }
    out.trim().to_string()
}

/// Go's `strconv.Quote`: double-quoted, with Go escapes for non-printable characters.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if go_is_print(c) => out.push(c),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x0b' => out.push_str("\\v"),
            c if c < ' ' || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// Approximates Go's `unicode.IsPrint` (letters, marks, numbers, punctuation, symbols and
/// the ASCII space) without Unicode tables: controls, blanks, format characters, private use
/// and noncharacters are not printable. Unassigned code points are treated as printable.
fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    let u = c as u32;
    let format = matches!(
        u,
        0xAD | 0x600..=0x605
            | 0x61C
            | 0x6DD
            | 0x70F
            | 0x890..=0x891
            | 0x8E2
            | 0x180E
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x2064
            | 0x2066..=0x206F
            | 0xFEFF
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0001
            | 0xE0020..=0xE007F
    );
    let private = matches!(u, 0xE000..=0xF8FF | 0xF0000..=0xFFFFD | 0x100000..=0x10FFFD);
    let nonchar = matches!(u, 0xFDD0..=0xFDEF) || (u & 0xFFFE) == 0xFFFE;
    !(format || private || nonchar)
}

/// The instruction keywords BuildKit knows.
pub const INSTRUCTIONS: [&str; 18] = [
    "add",
    "arg",
    "cmd",
    "copy",
    "entrypoint",
    "env",
    "expose",
    "from",
    "healthcheck",
    "label",
    "maintainer",
    "onbuild",
    "run",
    "shell",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// The closest known instruction to an unknown one (edit distance below 3), in the same case
/// style as written: `RUNN` gives `RUN`, `runn` gives `run`. `None` for known words.
pub fn suggest_instruction(word: &str) -> Option<String> {
    let opt = crate::lint::suggest(&word.to_lowercase(), INSTRUCTIONS.iter().copied())?;
    Some(
        if word != word.to_lowercase() && word == word.to_uppercase() {
            opt.to_uppercase()
        } else {
            opt
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_matches_go() {
        assert_eq!(go_quote("a\"b\\c"), r#""a\"b\\c""#);
        assert_eq!(go_quote("\0\x01\n\t\x7f"), r#""\x00\x01\n\t\x7f""#);
        assert_eq!(go_quote("♥ \u{a0}\u{85}"), "\"♥ \\u00a0\\u0085\"");
        assert_eq!(go_quote("\u{10ffff}"), r#""\U0010ffff""#);
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest_instruction("RUNN").as_deref(), Some("RUN"));
        assert_eq!(suggest_instruction("cpoy").as_deref(), Some("copy"));
        assert_eq!(suggest_instruction("run"), None);
        assert_eq!(suggest_instruction("xyzzy"), None);
    }
}
