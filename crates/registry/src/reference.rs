//! Image references with Docker's normalization (`busybox` → `docker.io/library/busybox:latest`),
//! following the grammar of github.com/distribution/reference.

use std::fmt;

const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const DOCKER_HUB_API_HOST: &str = "registry-1.docker.io";
const NAME_TOTAL_MAX: usize = 255;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {input:?}: {reason}")]
pub struct ReferenceError {
    pub input: String,
    pub reason: String,
}

/// A normalized image reference. With neither tag nor digest in the input, the tag is `latest`;
/// with only a digest, no tag is added (as Docker's `TagNameOnly`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `localhost:5000`, `[::1]:5000`, ...
    pub registry: String,
    /// `library/busybox`, ...
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`.
    pub digest: Option<String>,
}

impl Reference {
    pub fn parse(input: &str) -> Result<Self, ReferenceError> {
        let err = |reason: &str| ReferenceError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if input.is_empty() {
            return Err(err("empty reference"));
        }
        if input.len() == 64 && input.bytes().all(is_lower_hex) {
            return Err(err(
                "a 64-character hexadecimal string is an image id, not a repository name",
            ));
        }
        let (rest, digest) = match input.split_once('@') {
            Some((rest, d)) => (rest, Some(d)),
            None => (input, None),
        };
        let (registry, remainder) = split_domain(rest);
        let (repository, tag) = match remainder.rsplit_once(':') {
            Some((name, tag)) => (name, Some(tag)),
            None => (remainder.as_str(), None),
        };
        if repository.to_lowercase() != repository {
            return Err(err("repository name must be lowercase"));
        }
        validate_domain(&registry).map_err(|r| err(&format!("registry {registry:?}: {r}")))?;
        validate_repository(repository)
            .map_err(|r| err(&format!("repository {repository:?}: {r}")))?;
        if registry.len() + 1 + repository.len() > NAME_TOTAL_MAX {
            return Err(err("repository name must not be more than 255 characters"));
        }
        if let Some(tag) = tag
            && !valid_tag(tag)
        {
            return Err(err(&format!(
                "tag {tag:?}: must be 1-128 of [A-Za-z0-9_.-], not starting with . or -"
            )));
        }
        if let Some(d) = digest
            && kiln_content::blobs::digest_hex(d).is_err()
        {
            return Err(err(&format!(
                "digest {d:?}: only sha256: followed by 64 lowercase hex digits is supported"
            )));
        }
        let tag = match (tag, digest) {
            (None, None) => Some("latest".to_string()),
            (t, _) => t.map(str::to_string),
        };
        Ok(Self {
            registry,
            repository: repository.to_string(),
            tag,
            digest: digest.map(str::to_string),
        })
    }

    /// `registry/repository`, without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The host (and port) that serves the registry API: Docker Hub's is not `docker.io`.
    pub fn api_host(&self) -> &str {
        if self.registry == DEFAULT_DOMAIN {
            DOCKER_HUB_API_HOST
        } else {
            &self.registry
        }
    }

    /// Whether the registry is on loopback, where Docker talks plain HTTP.
    pub fn is_loopback(&self) -> bool {
        let host = host_without_port(&self.registry);
        host == "localhost"
            || host == "[::1]"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// `http` for loopback registries, `https` otherwise.
    pub fn scheme(&self) -> &'static str {
        if self.is_loopback() { "http" } else { "https" }
    }

    /// The same reference pinned to `digest`, keeping the tag (BuildKit's `name:tag@digest`).
    pub fn with_digest(&self, digest: &str) -> Self {
        Self {
            digest: Some(digest.to_string()),
            ..self.clone()
        }
    }
}

impl std::str::FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// The full form BuildKit writes in source ops: `docker.io/library/busybox:latest[@sha256:…]`.
impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Splits `name[:tag]` into registry and the rest, as Docker does: the first component is a
/// registry only if it looks like one (has `.` or `:`, is `localhost`, or has uppercase letters).
fn split_domain(name: &str) -> (String, String) {
    let (domain, remote) = match name.split_once('/') {
        None => (DEFAULT_DOMAIN, name),
        Some((first, rest)) => {
            if first == "localhost" || first.contains(['.', ':']) || first.to_lowercase() != first {
                (
                    if first == LEGACY_DEFAULT_DOMAIN {
                        DEFAULT_DOMAIN
                    } else {
                        first
                    },
                    rest,
                )
            } else {
                (DEFAULT_DOMAIN, name)
            }
        }
    };
    if domain == DEFAULT_DOMAIN && !remote.contains('/') {
        return (domain.to_string(), format!("library/{remote}"));
    }
    (domain.to_string(), remote.to_string())
}

fn host_without_port(registry: &str) -> &str {
    if registry.starts_with('[') {
        return registry.find(']').map_or(registry, |i| &registry[..=i]);
    }
    registry.split_once(':').map_or(registry, |(h, _)| h)
}

fn is_lower_hex(b: u8) -> bool {
    b.is_ascii_digit() || (b'a'..=b'f').contains(&b)
}

fn validate_domain(domain: &str) -> Result<(), &'static str> {
    let (host, port) = if domain.starts_with('[') {
        let end = domain.find(']').ok_or("unterminated IPv6 address")?;
        let inner = &domain[1..end];
        if inner.is_empty() || !inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err("invalid IPv6 address");
        }
        match &domain[end + 1..] {
            "" => ("", None),
            p => (
                "",
                Some(p.strip_prefix(':').ok_or("junk after IPv6 address")?),
            ),
        }
    } else {
        match domain.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err("port must be digits");
    }
    if !domain.starts_with('[') {
        for label in host.split('.') {
            let b = label.as_bytes();
            let ok = !b.is_empty()
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-';
            if !ok {
                return Err("invalid host name");
            }
        }
    }
    Ok(())
}

/// Path components of `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`, separated by `/`.
fn validate_repository(repo: &str) -> Result<(), &'static str> {
    for comp in repo.split('/') {
        let b = comp.as_bytes();
        if b.is_empty() {
            return Err("empty path component");
        }
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        if !alnum(b[0]) || !alnum(b[b.len() - 1]) {
            return Err("path components must start and end with [a-z0-9]");
        }
        let mut i = 0;
        while i < b.len() {
            if alnum(b[i]) {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &comp[start..i];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
                return Err("path components may only be separated by '.', '_', '__' or '-'");
            }
        }
    }
    Ok(())
}

fn valid_tag(tag: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:701b50c233765379725136673b7d7f955ed8a6f5c9ee8b845dde721dec0a8dc8";

    fn check(
        input: &str,
        registry: &str,
        repository: &str,
        tag: Option<&str>,
        digest: Option<&str>,
        display: &str,
    ) {
        let r = Reference::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
        assert_eq!(
            (
                r.registry.as_str(),
                r.repository.as_str(),
                r.tag.as_deref(),
                r.digest.as_deref()
            ),
            (registry, repository, tag, digest),
            "{input}"
        );
        assert_eq!(r.to_string(), display, "{input}");
        assert_eq!(
            Reference::parse(&r.to_string()).unwrap(),
            r,
            "round trip of {input}"
        );
    }

    #[test]
    fn normalizes_like_docker() {
        check(
            "busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
            "docker.io/library/busybox:latest",
        );
        check(
            "busybox:1.36",
            "docker.io",
            "library/busybox",
            Some("1.36"),
            None,
            "docker.io/library/busybox:1.36",
        );
        check(
            "user/app",
            "docker.io",
            "user/app",
            Some("latest"),
            None,
            "docker.io/user/app:latest",
        );
        check(
            "docker.io/busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
            "docker.io/library/busybox:latest",
        );
        check(
            "index.docker.io/library/busybox",
            "docker.io",
            "library/busybox",
            Some("latest"),
            None,
            "docker.io/library/busybox:latest",
        );
        check(
            "localhost:5000/busybox",
            "localhost:5000",
            "busybox",
            Some("latest"),
            None,
            "localhost:5000/busybox:latest",
        );
        check(
            "localhost/busybox",
            "localhost",
            "busybox",
            Some("latest"),
            None,
            "localhost/busybox:latest",
        );
        check(
            "127.0.0.1:5000/a/b:v1",
            "127.0.0.1:5000",
            "a/b",
            Some("v1"),
            None,
            "127.0.0.1:5000/a/b:v1",
        );
        check(
            "[::1]:5000/busybox",
            "[::1]:5000",
            "busybox",
            Some("latest"),
            None,
            "[::1]:5000/busybox:latest",
        );
        check(
            "ghcr.io/o/r",
            "ghcr.io",
            "o/r",
            Some("latest"),
            None,
            "ghcr.io/o/r:latest",
        );
        check(
            "Example/app",
            "Example",
            "app",
            Some("latest"),
            None,
            "Example/app:latest",
        );
        check(
            "a__b-c---d/e.f_g",
            "docker.io",
            "a__b-c---d/e.f_g",
            Some("latest"),
            None,
            "docker.io/a__b-c---d/e.f_g:latest",
        );
        let at = format!("busybox@{D}");
        check(
            &at,
            "docker.io",
            "library/busybox",
            None,
            Some(D),
            &format!("docker.io/library/busybox@{D}"),
        );
        let both = format!("localhost:5000/busybox:latest@{D}");
        check(
            &both,
            "localhost:5000",
            "busybox",
            Some("latest"),
            Some(D),
            &both,
        );
    }

    #[test]
    fn rejects_bad_references_with_a_reason() {
        for bad in [
            "",
            "BusyBox",
            "busybox:",
            "busybox:-tag",
            "a__b.c/d",
            "busybox:a/b",
            "busy//box",
            "busybox/",
            "busy..box",
            "-busybox",
            "busybox@sha256:abc",
            "busybox@md5:0123456789abcdef0123456789abcdef",
            "localhost:port/busybox",
            "host-.com/busybox",
            "[::1/busybox",
            "701b50c233765379725136673b7d7f955ed8a6f5c9ee8b845dde721dec0a8dc8",
            "busybox@",
            "busy box",
        ] {
            let e = Reference::parse(bad).expect_err(bad);
            assert_eq!(e.input, bad);
            assert!(!e.reason.is_empty());
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(Reference::parse(&long).is_err());
        let tag = format!("busybox:{}", "t".repeat(129));
        assert!(Reference::parse(&tag).is_err());
    }

    #[test]
    fn hosts_and_schemes() {
        let r = |s: &str| Reference::parse(s).unwrap();
        assert_eq!(r("busybox").api_host(), "registry-1.docker.io");
        assert_eq!(r("busybox").scheme(), "https");
        assert_eq!(r("quay.io/a/b").api_host(), "quay.io");
        for lo in [
            "localhost:5000/a",
            "localhost/a",
            "127.0.0.1:5000/a",
            "127.1.2.3/a",
            "[::1]:5000/a",
        ] {
            assert_eq!(r(lo).scheme(), "http", "{lo}");
        }
        for remote in [
            "10.0.0.1:5000/a",
            "localhost.example.com/a",
            "128.0.0.1/a",
            "[::2]:5000/a",
        ] {
            assert_eq!(r(remote).scheme(), "https", "{remote}");
        }
        assert_eq!(
            r("busybox").with_digest(D).to_string(),
            format!("docker.io/library/busybox:latest@{D}")
        );
    }
}
