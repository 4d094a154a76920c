//! Build checks: BuildKit's Dockerfile linter. Pure, like the rest of the crate.
//!
//! BuildKit runs each rule where it has the facts it needs: some on the syntax tree
//! ([`parse_checks`]), some on stages and global ARGs, some while dispatching instructions
//! (with the stage's environment). The converter calls the latter through [`Linter`]; the
//! warnings come back in [`crate::convert::Converted`].

pub mod rules;

mod config;
pub(crate) mod dispatch_checks;
pub(crate) mod parse_checks;

pub use config::Config;
pub use rules::Rule;

use crate::ast::Node;
use std::collections::BTreeMap;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub rule: &'static str,
    pub description: &'static str,
    pub url: &'static str,
    /// The message, as BuildKit words it.
    pub message: String,
    /// 1-based lines of the instruction the warning is about.
    pub start_line: usize,
    pub end_line: usize,
}

impl Warning {
    /// BuildKit's short form (`LintFormatShort`): `Rule: message (line N)`.
    pub fn short(&self) -> String {
        let mut s = format!("{}: {}", self.rule, self.message);
        if self.start_line > 0 {
            s.push_str(&format!(" (line {})", self.start_line));
        }
        s
    }

    /// One line for a terminal: `WARNING: Rule - URL` and where, with the message.
    pub fn display(&self, filename: &str) -> String {
        format!(
            "WARNING: {} - {} {filename}:{}: {}",
            self.rule, self.url, self.start_line, self.message
        )
    }
}

/// Collects warnings under a check configuration, with `# check=` comments directly above an
/// instruction applied to that instruction (BuildKit's `WithMergedConfigFromComments`).
#[derive(Debug, Clone, Default)]
pub struct Linter {
    config: Config,
    /// Start line of an instruction -> the configuration its comments give it.
    by_line: BTreeMap<usize, Config>,
    warnings: Vec<Warning>,
}

impl Linter {
    /// A linter for a parsed file; `ast` supplies the per-instruction comments.
    pub fn new(config: Config, ast: &Node) -> Linter {
        let mut by_line = BTreeMap::new();
        for n in &ast.children {
            if let Some(c) = config::from_comments(&n.prev_comment) {
                by_line.insert(n.start_line, config.merged(&c));
            }
        }
        Linter {
            config,
            by_line,
            warnings: Vec::new(),
        }
    }

    /// Reports `rule` at lines `start..=end` unless the configuration turns it off.
    pub fn run(&mut self, rule: &Rule, start: usize, end: usize, message: String) {
        let config = self.by_line.get(&start).unwrap_or(&self.config);
        if !config.enabled(rule) {
            return;
        }
        self.warnings.push(Warning {
            rule: rule.name,
            description: rule.description,
            url: rule.url,
            message,
            start_line: start,
            end_line: end.max(start),
        });
    }

    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    pub fn into_warnings(self) -> Vec<Warning> {
        self.warnings
    }

    /// With `error=true`: the error that fails the build when any rule fired.
    pub fn error(&self) -> Option<String> {
        error_for(&self.config, &self.warnings)
    }
}

/// BuildKit's `lint violation found for rules: A, B` when `error=true` and anything fired.
pub fn error_for(config: &Config, warnings: &[Warning]) -> Option<String> {
    if !config.error || warnings.is_empty() {
        return None;
    }
    let mut names: Vec<&str> = warnings.iter().map(|w| w.rule).collect();
    names.sort_unstable();
    names.dedup();
    Some(format!(
        "lint violation found for rules: {}",
        names.join(", ")
    ))
}

/// BuildKit's `suggest.Search`: the closest option under edit distance 3, `None` for an exact
/// match; the first of equally close options wins.
pub(crate) fn suggest<'a>(
    value: &str,
    options: impl IntoIterator<Item = &'a str>,
) -> Option<String> {
    let mut best = None;
    let mut min = 3;
    for opt in options {
        if opt == value {
            return None;
        }
        let d = levenshtein(value, opt);
        if d < min {
            min = d;
            best = Some(opt.to_string());
        }
    }
    best
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("PAHT", ["PATH", "HOME"]), Some("PATH".into()));
        assert_eq!(suggest("PATH", ["PATH"]), None);
        assert_eq!(suggest("XYZZY", ["PATH"]), None);
    }
}
