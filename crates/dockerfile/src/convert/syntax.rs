//! `# syntax=`: until gateway frontends exist, BuildKit's own Dockerfile frontend image
//! (`docker/dockerfile`, any tag or digest) is served by the built-in converter, and any other
//! frontend is refused.

use super::{ConvertError, ConvertOptions};
use crate::parser::ParseResult;

/// The progress note for a `docker/dockerfile` reference, an error for any other, nothing
/// without a directive. `--build-arg BUILDKIT_SYNTAX` wins over the directive, as in BuildKit.
pub(crate) fn check(
    parsed: &ParseResult,
    source: &[u8],
    opts: &ConvertOptions,
) -> Result<Option<String>, ConvertError> {
    let (line, value) = match opts.build_args.get("BUILDKIT_SYNTAX") {
        Some(v) => (0, v.clone()),
        None => match parsed.directives.iter().find(|d| d.name == "syntax") {
            Some(d) => (d.line, d.value.clone()),
            None => match after_shebang(source) {
                Some(found) => found,
                None => return Ok(None),
            },
        },
    };
    // The frontend's command line may follow the reference after a space.
    let reference = value.split_whitespace().next().unwrap_or_default();
    if is_builtin(reference) {
        Ok(Some(format!(
            "[internal] syntax {reference}: using the built-in Dockerfile frontend"
        )))
    } else {
        Err(ConvertError::ExternalFrontend {
            line,
            reference: reference.to_string(),
        })
    }
}

/// BuildKit's `DetectSyntax` also looks past a `#!` first line, which ends the parser's own
/// directive block: find `# syntax=` among the comment lines that follow it.
fn after_shebang(source: &[u8]) -> Option<(usize, String)> {
    let text = String::from_utf8_lossy(source.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(source));
    let mut lines = text.lines().enumerate();
    lines.next().filter(|(_, l)| l.starts_with("#!"))?;
    for (i, line) in lines {
        let (name, value) = line.strip_prefix('#')?.split_once('=')?;
        let name = name.trim().to_ascii_lowercase();
        if name == "syntax" {
            return Some((i + 1, value.trim().to_string()));
        }
        if name != "escape" && name != "check" {
            return None;
        }
    }
    None
}

/// `docker/dockerfile`, optionally with `docker.io/` (or `index.docker.io/`), a tag and/or a
/// digest.
pub(crate) fn is_builtin(reference: &str) -> bool {
    let name = reference.split('@').next().unwrap_or_default();
    let name = match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    };
    let name = name
        .strip_prefix("docker.io/")
        .or_else(|| name.strip_prefix("index.docker.io/"))
        .unwrap_or(name);
    name == "docker/dockerfile"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_references() {
        for ok in [
            "docker/dockerfile:1",
            "docker/dockerfile:1.7-labs",
            "docker.io/docker/dockerfile:1",
            "docker/dockerfile",
            "docker/dockerfile@sha256:ac85f380a63b13dfcefa89046420e1781752bab202122f8f50032edf31be0021",
            "docker/dockerfile:1@sha256:ac85f380a63b13dfcefa89046420e1781752bab202122f8f50032edf31be0021",
        ] {
            assert!(is_builtin(ok), "{ok}");
        }
        for bad in [
            "tonistiigi/dockerfile:1",
            "docker/dockerfile-upstream:master",
            "example.com/docker/dockerfile:1",
            "",
        ] {
            assert!(!is_builtin(bad), "{bad}");
        }
    }
}
