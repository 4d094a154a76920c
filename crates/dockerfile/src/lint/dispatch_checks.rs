//! Checks the converter runs with its state at hand: on each FROM (global ARGs, platform) and
//! while dispatching instructions (the stage's environment and ARGs).

use super::{Linter, rules, suggest};
use crate::shell::{EnvGetter, ProcessWordResult};
use kiln_pattern::PatternMatcher;
use std::collections::BTreeSet;

/// Per-stage facts some rules need (BuildKit keeps them on its dispatch state).
#[derive(Debug, Clone, Default)]
pub(crate) struct StageLint {
    /// An instruction in this build set WORKDIR (inherited from a base stage).
    pub workdir_set: bool,
    /// Lines of the last CMD, ENTRYPOINT and HEALTHCHECK of the stage.
    pub cmd: Option<(usize, usize)>,
    pub entrypoint: Option<(usize, usize)>,
    pub healthcheck: Option<(usize, usize)>,
}

/// The linter plus where the instruction being dispatched is and which ARGs it may use.
#[derive(Debug, Default)]
pub(crate) struct DispatchLint {
    pub linter: Linter,
    pub start: usize,
    pub end: usize,
    /// ARG names declared in the stage (with or without a value): never "undefined".
    pub declared: BTreeSet<String>,
    /// `.dockerignore`, for CopyIgnoredFile; `None` when there is none.
    pub ignore: Option<PatternMatcher>,
}

/// ARGs that are not put into the environment (BuildKit's `nonEnvArgs`).
pub(crate) const NON_ENV_ARGS: [&str; 2] =
    ["BUILDKIT_SBOM_SCAN_CONTEXT", "BUILDKIT_SBOM_SCAN_STAGE"];

impl DispatchLint {
    pub fn new(linter: Linter, ignore_patterns: &[String]) -> DispatchLint {
        let ignore = (!ignore_patterns.is_empty())
            .then(|| PatternMatcher::new(ignore_patterns).ok())
            .flatten();
        DispatchLint {
            linter,
            ignore,
            ..Default::default()
        }
    }

    fn run(&mut self, rule: &rules::Rule, message: String) {
        self.linter.run(rule, self.start, self.end, message);
    }

    /// UndefinedVar for the variables an expansion found unset.
    pub fn unmatched(&mut self, unmatched: &BTreeSet<String>, env: &dyn EnvGetter) {
        let keys = env.keys();
        for var in unmatched {
            if self.declared.contains(var) || NON_ENV_ARGS.contains(&var.as_str()) {
                continue;
            }
            let s = suggest(var, keys.iter().map(String::as_str));
            self.run(
                &rules::UNDEFINED_VAR,
                rules::undefined_var(var, s.as_deref()),
            );
        }
    }

    pub fn legacy_key_value(&mut self, keyword: &str) {
        self.run(
            &rules::LEGACY_KEY_VALUE_FORMAT,
            rules::legacy_key_value_format(keyword),
        );
    }

    /// SecretsUsedInArgOrEnv: a key with a secret-like word (`_`-separated, any case) and no
    /// allowed word.
    pub fn secret_key(&mut self, instruction: &str, key: &str) {
        const DENY: [&str; 10] = [
            "apikey",
            "auth",
            "credential",
            "credentials",
            "key",
            "password",
            "pword",
            "passwd",
            "secret",
            "token",
        ];
        const ALLOW: [&str; 3] = ["public", "file", "version"];
        if has_token(key, &DENY) && !has_token(key, &ALLOW) {
            self.run(
                &rules::SECRETS_USED_IN_ARG_OR_ENV,
                rules::secrets_used_in_arg_or_env(instruction, key),
            );
        }
    }

    /// JSONArgsRecommended for a shell-form CMD/ENTRYPOINT when no SHELL is set.
    pub fn json_args(&mut self, keyword: &str, prepend_shell: bool, shell_set: bool) {
        if prepend_shell && !shell_set {
            self.run(
                &rules::JSON_ARGS_RECOMMENDED,
                rules::json_args_recommended(keyword),
            );
        }
    }

    /// MultipleInstructionsDisallowed: reported at the earlier instruction, the one ignored.
    pub fn used_once(&mut self, keyword: &str, last: &mut Option<(usize, usize)>) {
        if let Some((s, e)) = *last {
            self.linter.run(
                &rules::MULTIPLE_INSTRUCTIONS_DISALLOWED,
                s,
                e,
                rules::multiple_instructions_disallowed(keyword),
            );
        }
        *last = Some((self.start, self.end));
    }

    /// WorkdirRelativePath: only the first WORKDIR of a build chain counts.
    pub fn workdir(&mut self, st: &mut StageLint, path: &str, windows: bool) {
        let abs = path.starts_with('/') || (windows && is_windows_abs(path));
        if !st.workdir_set && !abs {
            self.run(
                &rules::WORKDIR_RELATIVE_PATH,
                rules::workdir_relative_path(path),
            );
        }
        st.workdir_set = true;
    }

    /// ExposeProtoCasing and ExposeInvalidFormat for one `[ip:][hostPort:]port[/proto]`.
    pub fn expose(&mut self, raw: &str) {
        let (ip, host_port, container) = split_port(raw);
        let proto = container.split_once('/').map_or("", |(_, p)| p);
        if proto != proto.to_lowercase() {
            self.run(&rules::EXPOSE_PROTO_CASING, rules::expose_proto_casing(raw));
        }
        if !ip.is_empty() || !host_port.is_empty() {
            self.run(
                &rules::EXPOSE_INVALID_FORMAT,
                rules::expose_invalid_format(raw),
            );
        }
    }

    /// CopyIgnoredFile for a source read from the build context. Not checked when the ignore
    /// file has `!` exceptions: those cannot be judged statically.
    pub fn copy_source(&mut self, is_add: bool, src: &str) {
        let Some(m) = &self.ignore else { return };
        if m.exclusions() {
            return;
        }
        let cleaned = kiln_pattern::clean_path(src);
        let rel = cleaned.trim_start_matches('/');
        let rel = if rel.is_empty() { "." } else { rel };
        let ignored = if rel == "." {
            m.patterns()
                .iter()
                .any(|p| !p.exclusion && matches!(p.text.as_str(), "*" | "**" | "**/*"))
        } else {
            m.matches(rel)
        };
        if ignored {
            let cmd = if is_add { "Add" } else { "Copy" };
            self.run(
                &rules::COPY_IGNORED_FILE,
                rules::copy_ignored_file(cmd, &cleaned),
            );
        }
    }
}

fn has_token(key: &str, tokens: &[&str]) -> bool {
    key.split('_')
        .any(|part| tokens.iter().any(|t| part.eq_ignore_ascii_case(t)))
}

fn is_windows_abs(p: &str) -> bool {
    let b = p.as_bytes();
    p.starts_with('\\') || (b.len() >= 3 && b[1] == b':' && (b[2] == b'\\' || b[2] == b'/'))
}

/// BuildKit's `splitParts`: `ip:hostPort:containerPort`, IPv6 in brackets.
fn split_port(raw: &str) -> (&str, &str, &str) {
    let parts: Vec<&str> = raw.split(':').collect();
    match parts.as_slice() {
        [] | [""] => ("", "", ""),
        [c] => ("", "", c),
        [h, c] => ("", h, c),
        [ip, h, c] => (ip, h, c),
        _ => {
            // More colons: an IPv6 address before the last two parts.
            let n = parts.len();
            let ip_len = parts[..n - 2].iter().map(|p| p.len() + 1).sum::<usize>() - 1;
            (&raw[..ip_len], parts[n - 2], parts[n - 1])
        }
    }
}

/// The checks on one FROM: UndefinedArgInFrom for its base name and platform,
/// RedundantTargetPlatform and FromPlatformFlagConstDisallowed.
pub(crate) struct FromCheck<'a> {
    pub start: usize,
    pub end: usize,
    pub stage_name: &'a str,
    /// Names of the global ARGs (declared, with or without a value) and of the automatic ones.
    pub known: &'a BTreeSet<String>,
}

impl FromCheck<'_> {
    pub fn base(&self, lint: &mut Linter, m: &ProcessWordResult) {
        self.undefined(lint, m);
    }

    /// `platform` is the flag as written.
    pub fn platform(
        &self,
        lint: &mut Linter,
        platform: &str,
        m: &ProcessWordResult,
        target_platform: Option<String>,
    ) {
        self.undefined(lint, m);
        if m.matched.len() == 1
            && m.unmatched.is_empty()
            && m.matched.contains("TARGETPLATFORM")
            && target_platform.as_deref() == Some(m.result.as_str())
        {
            lint.run(
                &rules::REDUNDANT_TARGET_PLATFORM,
                self.start,
                self.end,
                rules::redundant_target_platform(platform),
            );
        }
        if m.matched.is_empty() && m.unmatched.is_empty() {
            let Some(p) = crate::convert::parse_platform_str(&m.result) else {
                return;
            };
            // Naming the stage after its platform shows the constant is deliberate.
            if self.stage_name.contains(&p.os) || self.stage_name.contains(&p.architecture) {
                return;
            }
            lint.run(
                &rules::FROM_PLATFORM_FLAG_CONST_DISALLOWED,
                self.start,
                self.end,
                rules::from_platform_flag_const_disallowed(&m.result),
            );
        }
    }

    fn undefined(&self, lint: &mut Linter, m: &ProcessWordResult) {
        for arg in &m.unmatched {
            if self.known.contains(arg) {
                continue;
            }
            let s = suggest(arg, self.known.iter().map(String::as_str));
            lint.run(
                &rules::UNDEFINED_ARG_IN_FROM,
                self.start,
                self.end,
                rules::undefined_arg_in_from(arg, s.as_deref()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        assert_eq!(split_port("80/tcp"), ("", "", "80/tcp"));
        assert_eq!(split_port("8080:80"), ("", "8080", "80"));
        assert_eq!(split_port("127.0.0.1:8080:80"), ("127.0.0.1", "8080", "80"));
        assert_eq!(split_port("[::1]:8080:80"), ("[::1]", "8080", "80"));
    }

    #[test]
    fn secret_tokens() {
        assert!(has_token("AWS_SECRET_ACCESS_KEY", &["secret"]));
        assert!(has_token("github_token", &["token"]));
        assert!(!has_token("MONKEY", &["key"]));
    }
}
