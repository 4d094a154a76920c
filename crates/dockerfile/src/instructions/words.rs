//! Word-level helpers: heredoc words as BuildKit's parser reads them, `<<-` chomping, and Go
//! durations for HEALTHCHECK.

use crate::ast::Heredoc;
use crate::shell::{EnvList, Lex};

/// Recognises a heredoc word (`<<EOF`, `<<-"EOF"`, `3<<EOF`) as BuildKit's parser does.
pub fn parse_heredoc_word(src: &str) -> Option<Heredoc> {
    let digits = src.chars().take_while(|c| c.is_ascii_digit()).count();
    let rest = src[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match rest.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, rest),
    };
    let rest = rest.trim_start();
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    let mut lex = Lex::new('\\');
    lex.skip_unset_env = true;
    let empty = EnvList::default();
    let words = lex.process_words(rest, &empty).ok()?;
    if words.len() != 1 {
        return None;
    }
    lex.raw_quotes = true;
    let raw = lex.process_words(rest, &empty).ok()?;
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    Some(Heredoc {
        name: words[0].clone(),
        expand: raw.len() == 1 && quotes(&words[0]) == quotes(&raw[0]),
        chomp,
        file_descriptor: src[..digits].parse().unwrap_or(0),
        content: String::new(),
    })
}

/// Strips leading tabs from every line (`<<-`).
pub fn chomp_heredoc_content(src: &str) -> String {
    src.split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

/// Go's `time.ParseDuration` (e.g. `1h30m`, `1.5s`, `300ms`), in nanoseconds.
pub fn parse_go_duration(s: &str) -> Option<i64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return None;
        }
        let num: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += num * unit;
    }
    let v = total.round() as i64;
    Some(if neg { -v } else { v })
}
