//! Check options: `# check=skip=A,B;error=true;experimental=C`, the `check` frontend option and
//! the `BUILDKIT_DOCKERFILE_CHECK` build argument all use this syntax (BuildKit's
//! `ParseLintOptions`).

use super::Rule;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pub skip_all: bool,
    pub skip: Vec<String>,
    pub experimental_all: bool,
    pub experimental: Vec<String>,
    /// Fail the build when any rule fires.
    pub error: bool,
}

impl Config {
    /// Parses check options; the messages are BuildKit's.
    pub fn parse(s: &str) -> Result<Config, String> {
        let s = s.trim();
        let mut c = Config::default();
        if s.is_empty() {
            return Ok(c);
        }
        // Go's SplitN(s, ";", 3): a third part keeps any further `;`.
        for part in s.splitn(3, ';') {
            let Some((k, v)) = part.split_once('=') else {
                return Err(format!("invalid check option {}", q(part)));
            };
            let v = v.trim();
            match k.trim() {
                "skip" if v == "all" => c.skip_all = true,
                "skip" => c.skip = v.split(',').map(|r| r.trim().to_string()).collect(),
                "experimental" if v == "all" => c.experimental_all = true,
                "experimental" => {
                    c.experimental = v.split(',').map(|r| r.trim().to_string()).collect()
                }
                "error" => {
                    c.error = parse_go_bool(v).ok_or_else(|| {
                        format!(
                            "failed to parse check option {}: strconv.ParseBool: parsing {}: invalid syntax",
                            q(part),
                            q(v)
                        )
                    })?
                }
                other => return Err(format!("invalid check option {}", q(other))),
            }
        }
        Ok(c)
    }

    /// Whether `rule` reports: experimental rules only when enabled (and then skip does not
    /// apply, as in BuildKit); others unless skipped.
    pub fn enabled(&self, rule: &Rule) -> bool {
        if rule.experimental {
            self.experimental_all || self.experimental.iter().any(|r| r == rule.name)
        } else {
            !(self.skip_all || self.skip.iter().any(|r| r == rule.name))
        }
    }

    /// This configuration with `other`'s settings added (BuildKit's `WithMergedConfig`; `error`
    /// is not taken from comments).
    pub fn merged(&self, other: &Config) -> Config {
        let mut c = self.clone();
        c.skip_all |= other.skip_all;
        c.experimental_all |= other.experimental_all;
        c.skip.extend(other.skip.iter().cloned());
        c.experimental.extend(other.experimental.iter().cloned());
        c
    }
}

/// The first `check=` comment among an instruction's comments, if it parses.
pub(crate) fn from_comments(comments: &[String]) -> Option<Config> {
    for comment in comments {
        let Some((name, value)) = comment.trim().split_once('=') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("check") {
            continue;
        }
        let value = value.trim();
        let value = value.split(' ').next().unwrap_or_default();
        return Config::parse(value).ok();
    }
    None
}

fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn q(s: &str) -> String {
    crate::parser::go_quote(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lint::rules;

    #[test]
    fn options() {
        let c = Config::parse("skip=JSONArgsRecommended, StageNameCasing;error=true").unwrap();
        assert_eq!(c.skip, ["JSONArgsRecommended", "StageNameCasing"]);
        assert!(c.error);
        assert!(!c.enabled(&rules::JSON_ARGS_RECOMMENDED));
        assert!(c.enabled(&rules::MAINTAINER_DEPRECATED));
        assert!(!c.enabled(&rules::INVALID_DEFINITION_DESCRIPTION));
        let c = Config::parse("skip=all;experimental=all").unwrap();
        assert!(!c.enabled(&rules::MAINTAINER_DEPRECATED));
        assert!(c.enabled(&rules::INVALID_DEFINITION_DESCRIPTION));
        assert_eq!(
            Config::parse("skip").unwrap_err(),
            "invalid check option \"skip\""
        );
        assert_eq!(
            Config::parse("nope=1").unwrap_err(),
            "invalid check option \"nope\""
        );
        assert!(Config::parse("error=maybe").is_err());
    }

    #[test]
    fn comments() {
        let c = from_comments(&[" check=skip=all".into()]).unwrap();
        assert!(c.skip_all);
        assert!(from_comments(&["just a comment".into()]).is_none());
    }
}
