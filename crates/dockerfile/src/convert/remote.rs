//! ADD from a URL or a Git repository: which sources are remote (BuildKit's `dfgitutil`
//! and `isHTTPSource`) and the source ops `llb.HTTP` and `llb.Git` marshal.

use super::ops::{FileAction, metadata};
use kiln_llb::{Output, Vertex, pb};
use std::collections::BTreeMap;

/// A Git source as BuildKit's `dfgitutil.ParseGitRef` reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct GitRef {
    /// The URL without fragment and query, as git is given it.
    pub remote: String,
    pub git_ref: String,
    pub checksum: String,
    pub subdir: String,
    /// `github.com/…` without a scheme: a local path for ADD.
    pub indistinguishable_from_local: bool,
    pub keep_git_dir: Option<bool>,
    pub submodules: Option<bool>,
    pub fetch_by_commit: bool,
    pub ssh: bool,
}

/// `Ok(None)`: not a Git source. `Err`: a Git source that is invalid (BuildKit reports it).
pub(crate) fn parse_git_ref(s: &str) -> Result<Option<GitRef>, String> {
    if s.starts_with("./") || s.starts_with("../") {
        return Ok(None);
    }
    if s.starts_with("github.com/") {
        return Ok(Some(GitRef {
            indistinguishable_from_local: true,
            ..Default::default()
        }));
    }
    let Some(url) = GitUrl::parse(s) else {
        return Ok(None);
    };
    // An http(s) URL is a repository only when its path ends in `.git`.
    if matches!(url.scheme.as_str(), "http" | "https") && !url.path.ends_with(".git") {
        return Ok(None);
    }
    let (git_ref, subdir) = split_fragment(&url.fragment);
    let mut r = GitRef {
        remote: url.remote.clone(),
        git_ref,
        subdir,
        ssh: url.scheme == "ssh",
        ..Default::default()
    };
    r.load_query(&url.query)?;
    Ok(Some(r))
}

/// `http://` or `https://` that is not a Git repository.
pub(crate) fn is_http_source(s: &str) -> bool {
    (s.starts_with("http://") || s.starts_with("https://"))
        && !matches!(parse_git_ref(s), Ok(Some(_)) | Err(_))
}

/// The parts of a Git URL BuildKit's `gitutil.ParseURL` yields.
struct GitUrl {
    scheme: String,
    host: String,
    /// Decoded.
    path: String,
    query: Vec<(String, String)>,
    /// Decoded.
    fragment: String,
    remote: String,
}

impl GitUrl {
    fn parse(s: &str) -> Option<GitUrl> {
        let proto_len = s
            .find("://")
            .filter(|&i| i > 0 && s[..i].bytes().all(|b| b.is_ascii_alphanumeric()));
        let Some(i) = proto_len else {
            return Self::parse_scp(s);
        };
        let scheme = s[..i].to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https" | "ssh" | "git") {
            return None;
        }
        let (rest, fragment) = s[i + 3..].split_once('#').unwrap_or((&s[i + 3..], ""));
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, raw_path) = match rest.find('/') {
            Some(p) => (&rest[..p], &rest[p..]),
            None => (rest, ""),
        };
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        Some(GitUrl {
            remote: format!("{scheme}://{authority}{raw_path}"),
            scheme,
            host: host.to_string(),
            path: unescape(raw_path, false)?,
            query: parse_query(query),
            fragment: unescape(fragment, false)?,
        })
    }

    /// `user@host:path[?query][#fragment]`: an ssh remote.
    fn parse_scp(s: &str) -> Option<GitUrl> {
        let (user, rest) = s.split_once('@')?;
        let (host, rest) = rest.split_once(':')?;
        let user_ok = !user.is_empty()
            && user
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        let host_ok = !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !user_ok || !host_ok {
            return None;
        }
        let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        Some(GitUrl {
            scheme: "ssh".into(),
            host: host.into(),
            path: path.into(),
            query: parse_query(query),
            fragment: fragment.into(),
            remote: format!("{user}@{host}:{path}"),
        })
    }
}

/// Go's `gitutil.parseOpts`: `ref[:subdir]`, the subdir cleaned.
fn split_fragment(f: &str) -> (String, String) {
    let (r, sub) = f.split_once(':').unwrap_or((f, ""));
    let sub = super::util::join(&["/", sub]);
    (r.to_string(), sub.trim_start_matches('/').to_string())
}

/// Go's percent-decoding (`+` is a space in queries); `None` on a bad escape.
fn unescape(s: &str, query: bool) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: Option<&u8>| c.and_then(|c| (*c as char).to_digit(16));
                let (h, l) = (hex(b.get(i + 1))?, hex(b.get(i + 2))?);
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
            b'+' if query => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

/// Go's `url.ParseQuery`, keeping what it keeps (malformed pairs are dropped).
fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty() && !p.contains(';'))
        .filter_map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Some((unescape(k, true)?, unescape(v, true)?))
        })
        .collect()
}

fn parse_bool(v: Option<&str>, what: &str) -> Result<bool, String> {
    match v {
        None => Ok(true),
        Some("1" | "t" | "T" | "TRUE" | "true" | "True") => Ok(true),
        Some("0" | "f" | "F" | "FALSE" | "false" | "False") => Ok(false),
        Some(v) => Err(format!("invalid {what} value: {v:?}")),
    }
}

impl GitRef {
    /// BuildKit's `loadQuery`: `?ref=`, `tag=`, `branch=`, `subdir=`, `checksum=`, …
    fn load_query(&mut self, query: &[(String, String)]) -> Result<(), String> {
        let mut keys: Vec<&str> = query.iter().map(|(k, _)| k.as_str()).collect();
        keys.dedup();
        let (mut tag, mut branch) = (String::new(), String::new());
        let mut seen = std::collections::BTreeSet::new();
        for key in keys {
            if !seen.insert(key) {
                continue;
            }
            let vals: Vec<&str> = query
                .iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .collect();
            if vals.len() > 1 {
                return Err(format!("query {key:?} has multiple values"));
            }
            let v = vals.first().copied().filter(|v| !v.is_empty());
            if v.is_none() && !matches!(key, "submodules" | "keep-git-dir" | "fetch-by-commit") {
                return Err(format!("query {key:?} has no value"));
            }
            let val = v.unwrap_or_default().to_string();
            match key {
                "ref" => {
                    if !self.git_ref.is_empty() && self.git_ref != val {
                        return Err(format!("ref conflicts: {:?} vs {val:?}", self.git_ref));
                    }
                    self.git_ref = val;
                }
                "tag" => tag = val,
                "branch" => branch = val,
                "subdir" => {
                    if !self.subdir.is_empty() && self.subdir != val {
                        return Err(format!("subdir conflicts: {:?} vs {val:?}", self.subdir));
                    }
                    self.subdir = val;
                }
                "checksum" | "commit" => self.checksum = val,
                "keep-git-dir" => self.keep_git_dir = Some(parse_bool(v, "keep-git-dir")?),
                "submodules" => self.submodules = Some(parse_bool(v, "submodules")?),
                "fetch-by-commit" => self.fetch_by_commit = parse_bool(v, "fetch-by-commit")?,
                "mtime" => {
                    if !matches!(val.as_str(), "checkout" | "commit") {
                        return Err(format!(
                            "invalid mtime value: {val:?} (must be \"checkout\" or \"commit\")"
                        ));
                    }
                }
                _ => return Err(format!("unexpected query {key:?}")),
            }
        }
        let has_tag = !tag.is_empty();
        for (name, prefix, v) in [
            ("tag", "refs/tags/", tag),
            ("branch", "refs/heads/", branch),
        ] {
            if v.is_empty() {
                continue;
            }
            if name == "branch" && has_tag {
                return Err("branch conflicts with tag".into());
            }
            let full = if v.starts_with(prefix) {
                v
            } else {
                format!("{prefix}{v}")
            };
            if !self.git_ref.is_empty() && self.git_ref != full {
                return Err(format!("ref conflicts: {:?} vs {full:?}", self.git_ref));
            }
            self.git_ref = full;
        }
        Ok(())
    }
}

fn source_op(identifier: String, attrs: BTreeMap<String, String>) -> pb::Op {
    pb::Op {
        constraints: Some(pb::WorkerConstraints::default()),
        op: Some(pb::op::Op::Source(pb::SourceOp { identifier, attrs })),
        ..Default::default()
    }
}

/// `llb.HTTP(url, llb.Filename(f), llb.WithCustomName(name), llb.Checksum(c), dfCmd(params))`.
pub(crate) fn http_source(url: &str, filename: &str, checksum: &str, name: &str) -> Output {
    let mut attrs = BTreeMap::new();
    let mut caps = Vec::new();
    if !checksum.is_empty() {
        attrs.insert("http.checksum".to_string(), checksum.to_string());
        caps.push("source.http.checksum");
    }
    attrs.insert("http.filename".to_string(), filename.to_string());
    caps.push("source.http");
    // dfCmd of a SourcesAndDest, which has no String(): an empty command.
    let md = metadata(
        &[
            ("com.docker.dockerfile.v1.command", ""),
            ("llb.customname", name),
        ],
        &caps,
    );
    Vertex::output(source_op(url.to_string(), attrs), vec![], md)
}

/// `llb.Git(remote, "", opts…)` with the options dispatchCopy passes.
pub(crate) fn git_source(
    r: &GitRef,
    keep_git_dir: bool,
    checksum: &str,
    name: &str,
) -> Result<Output, String> {
    let url =
        GitUrl::parse(&r.remote).ok_or_else(|| format!("invalid git remote {:?}", r.remote))?;
    let mut id = format!("{}{}", url.host, super::util::join(&["/", &url.path]));
    if !r.git_ref.is_empty() || !r.subdir.is_empty() {
        id.push('#');
        id.push_str(&r.git_ref);
        if !r.subdir.is_empty() {
            id.push(':');
            id.push_str(&r.subdir);
        }
    }
    let mut attrs = BTreeMap::new();
    let mut caps = Vec::new();
    let mut attr = |k: &str, v: &str, cap: Option<&'static str>| {
        attrs.insert(k.to_string(), v.to_string());
        caps.extend(cap);
    };
    if keep_git_dir {
        attr("git.keepgitdir", "true", Some("source.git.keepgitdir"));
    }
    attr("git.fullurl", &r.remote, Some("source.git.fullurl"));
    attr("git.authtokensecret", "GIT_AUTH_TOKEN", None);
    attr("git.authheadersecret", "GIT_AUTH_HEADER", None);
    if !checksum.is_empty() {
        attr("git.checksum", checksum, Some("source.git.checksum"));
    }
    if r.submodules == Some(false) {
        attr(
            "git.skipsubmodules",
            "true",
            Some("source.git.skipsubmodules"),
        );
    }
    if r.fetch_by_commit {
        attr(
            "git.fetchbycommit",
            "true",
            Some("source.git.fetchbycommit"),
        );
    }
    caps.push("source.git");
    let md = metadata(&[("llb.customname", name)], &caps);
    Ok(Vertex::output(
        source_op(format!("git://{id}"), attrs),
        vec![],
        md,
    ))
}

/// The name BuildKit's ADD gives a downloaded file: the URL path's last element.
pub(crate) fn http_file_name(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.split(['#', '?']).next().unwrap_or("");
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    let Some(path) = unescape(path, false) else {
        return "__unnamed__".into();
    };
    let t = path.trim_end_matches('/');
    let base = if path.is_empty() {
        "."
    } else if t.is_empty() {
        "/"
    } else {
        t.rsplit('/').next().unwrap_or(t)
    };
    if base == "." || base == "/" {
        "__unnamed__".into()
    } else {
        base.into()
    }
}

/// Go's `digest.Parse`, for `--checksum` of a URL.
pub(crate) fn check_digest(s: &str) -> Result<(), String> {
    let i = s.find(':').filter(|&i| i > 0 && i + 1 < s.len());
    let Some(i) = i else {
        return Err("invalid checksum digest format".into());
    };
    let (algo, hex) = (&s[..i], &s[i + 1..]);
    let len = match algo {
        "sha256" => 64,
        "sha384" => 96,
        "sha512" => 128,
        _ => return Err("unsupported digest algorithm".into()),
    };
    if hex.len() != len {
        return Err("invalid checksum digest length".into());
    }
    if !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err("invalid checksum digest format".into());
    }
    Ok(())
}

/// ADD's flags that apply to remote sources; `keep_git_dir` and `checksum` take what a Git
/// URL's query says, for the sources after it too (BuildKit updates its copy config).
#[derive(Debug, Clone, Default)]
pub(crate) struct AddOpts {
    pub unpack: Option<bool>,
    pub keep_git_dir: Option<bool>,
    pub checksum: String,
}

impl AddOpts {
    pub fn new(unpack: Option<bool>, keep_git_dir: Option<bool>, checksum: &str) -> AddOpts {
        AddOpts {
            unpack,
            keep_git_dir,
            checksum: checksum.to_string(),
        }
    }
}

/// What every remote copy of one instruction shares (`llb.Copy` with `CopyInfo{Mode}` and the
/// instruction's owner and excludes; everything else is off).
pub(crate) fn copy_base(
    dest: &str,
    owner: &Option<pb::ChownOpt>,
    mode: i32,
    mode_str: &str,
    exclude: &[String],
) -> pb::FileActionCopy {
    pb::FileActionCopy {
        dest: dest.to_string(),
        owner: owner.clone(),
        mode,
        mode_str: mode_str.to_string(),
        timestamp: -1,
        exclude_patterns: exclude.to_vec(),
        ..Default::default()
    }
}

/// The copy action for one remote source of ADD (`None`: a path in the context). `base`
/// holds the destination, owner, mode and excludes every source of the instruction shares.
pub(crate) fn remote_copy(
    src: &str,
    add: Option<&mut AddOpts>,
    base: &pb::FileActionCopy,
    name: &str,
) -> Result<Option<FileAction>, String> {
    let git = parse_git_ref(src)?.filter(|g| !g.indistinguishable_from_local);
    if let Some(g) = git {
        let Some(add) = add else {
            return Err("source can't be a git ref for COPY".into());
        };
        if g.ssh {
            return Err(format!(
                "ADD {src}: ssh Git sources are not supported yet (https, http and git:// are)"
            ));
        }
        if let (Some(a), Some(b)) = (add.keep_git_dir, g.keep_git_dir)
            && a != b
        {
            return Err("inconsistent keep-git-dir configuration".into());
        }
        if g.keep_git_dir.is_some() {
            add.keep_git_dir = g.keep_git_dir;
        }
        if !add.checksum.is_empty() && !g.checksum.is_empty() && add.checksum != g.checksum {
            return Err(format!(
                "checksum mismatch {:?} != {:?}",
                add.checksum, g.checksum
            ));
        }
        if !g.checksum.is_empty() {
            add.checksum = g.checksum.clone();
        }
        let st = git_source(&g, add.keep_git_dir == Some(true), &add.checksum, name)?;
        let copy = pb::FileActionCopy {
            src: "/".into(),
            create_dest_path: true,
            ..base.clone()
        };
        return Ok(Some(FileAction::Copy(Box::new(copy), Some(st))));
    }
    if !is_http_source(src) {
        return Ok(None);
    }
    let Some(add) = add else {
        return Err("source can't be a URL for COPY".into());
    };
    let f = http_file_name(src);
    if !add.checksum.is_empty() {
        check_digest(&add.checksum)?;
    }
    let st = http_source(src, &f, &add.checksum, name);
    // Remote files are not unpacked unless --unpack says so.
    let copy = pb::FileActionCopy {
        src: super::util::join(&["/", &f]),
        create_dest_path: true,
        attempt_unpack_docker_compatibility: add.unpack.unwrap_or(false),
        ..base.clone()
    };
    Ok(Some(FileAction::Copy(Box::new(copy), Some(st))))
}

/// A URL or a Git repository (not a context path) as ADD reads its sources.
pub(crate) fn is_remote(s: &str) -> bool {
    is_http_source(s) || matches!(parse_git_ref(s), Ok(Some(g)) if !g.indistinguishable_from_local)
}

/// BuildKit's checks of `ADD --checksum`: one source, a URL or a Git repository.
pub(crate) fn check_checksum_sources(sources: &[String]) -> Result<(), String> {
    if sources.len() != 1 {
        return Err("checksum can't be specified for multiple sources".into());
    }
    let git = matches!(parse_git_ref(&sources[0]), Ok(Some(_)));
    if !is_http_source(&sources[0]) && !git {
        return Err("checksum requires HTTP(S) or Git sources".into());
    }
    Ok(())
}
