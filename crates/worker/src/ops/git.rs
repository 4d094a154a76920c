//! `git://HOST/PATH#REF:SUBDIR` sources: a checkout of one commit in a new layer (BuildKit's
//! source/git), through Debian's `git` CLI.
//!
//! The key is the commit the ref resolves to (`git ls-remote`, or the ref itself when it is a
//! full commit id), so a moved branch rebuilds and an unchanged one does not. `execute`
//! shallow-fetches that commit into a scratch repository under the store's tmp dir and moves
//! the checkout (or its subdir) into the layer; `.git` stays only with `git.keepgitdir=true`.
//!
//! Repositories are untrusted: hooks never run (`core.hooksPath=/dev/null`, empty template),
//! no user or system git config and no `$HOME` (so no credential helpers or `.netrc`), no
//! prompts, and only the https, http and git protocols (file too when `KILN_GIT_ALLOW_FILE=1`,
//! for tests), enforced by git itself through `GIT_ALLOW_PROTOCOL` for submodules as well.

use crate::Worker;
use crate::store::Ref;
use async_trait::async_trait;
use kiln_solver::{EventKind, ExecContext, Inputs, OpError, Operation};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Set to `1` to allow `file://` remotes (tests only: a build must not read the host's disk).
pub const ALLOW_FILE_ENV: &str = "KILN_GIT_ALLOW_FILE";

pub struct GitSource {
    worker: Arc<Worker>,
    /// The identifier after `git://`.
    id: String,
    attrs: BTreeMap<String, String>,
    resolved: tokio::sync::Mutex<Option<Resolved>>,
}

/// What the op asks for, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Spec {
    remote: String,
    git_ref: String,
    subdir: String,
    keep_git_dir: bool,
    checksum: String,
    skip_submodules: bool,
    fetch_by_commit: bool,
}

#[derive(Debug, Clone)]
struct Resolved {
    /// The remote ref that was resolved (`refs/heads/main`, `refs/tags/v1`, `HEAD`), if any.
    used_ref: Option<String>,
    /// The commit to check out.
    commit: String,
}

fn is_commit_sha(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `path.Join("/", p)` without the leading slash: `a/../b/` is `b`, `..` is empty.
fn clean_subdir(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for c in p.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts.join("/")
}

impl Spec {
    fn parse(id: &str, attrs: &BTreeMap<String, String>) -> Result<Spec, String> {
        let (location, fragment) = id.split_once('#').unwrap_or((id, ""));
        let (git_ref, subdir) = fragment.split_once(':').unwrap_or((fragment, ""));
        let mut spec = Spec {
            remote: format!("https://{location}"),
            git_ref: git_ref.to_string(),
            subdir: clean_subdir(subdir),
            keep_git_dir: false,
            checksum: String::new(),
            skip_submodules: false,
            fetch_by_commit: false,
        };
        let name = format!("git://{id}");
        for (k, v) in attrs {
            match k.as_str() {
                "git.fullurl" => spec.remote = v.clone(),
                "git.keepgitdir" => spec.keep_git_dir = v == "true",
                "git.checksum" => spec.checksum = v.clone(),
                "git.skipsubmodules" => spec.skip_submodules = v == "true",
                "git.fetchbycommit" => spec.fetch_by_commit = v == "true",
                // Names of session secrets; Kiln has no secrets to offer, and BuildKit goes on
                // without them when the client has none.
                "git.authtokensecret" | "git.authheadersecret" => {}
                "git.mtime" if v == "checkout" => {}
                _ if k.starts_with("git.") => {
                    return Err(format!("{name}: source attribute {k} is not supported yet"));
                }
                _ => {}
            }
        }
        if !spec.checksum.is_empty() && !spec.checksum.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "invalid checksum {} for Git URL, expected hex commit hash",
                spec.checksum
            ));
        }
        check_protocol(&spec.remote)?;
        Ok(spec)
    }
}

/// Only https, http and git remotes (file with [`ALLOW_FILE_ENV`]); ssh needs an agent Kiln
/// does not forward yet.
fn check_protocol(remote: &str) -> Result<(), String> {
    let scheme = remote
        .split_once("://")
        .map(|(s, _)| s.to_ascii_lowercase())
        .unwrap_or_default();
    let file_ok = std::env::var(ALLOW_FILE_ENV).is_ok_and(|v| v == "1");
    match scheme.as_str() {
        "https" | "http" | "git" => Ok(()),
        "file" if file_ok => Ok(()),
        "ssh" | "" => Err(format!(
            "git remote {remote}: ssh remotes are not supported yet (https, http and git are)"
        )),
        s => Err(format!(
            "git remote {remote}: protocol {s} is not allowed (https, http and git are)"
        )),
    }
}

fn allowed_protocols() -> &'static str {
    if std::env::var(ALLOW_FILE_ENV).is_ok_and(|v| v == "1") {
        "https:http:git:file"
    } else {
        "https:http:git"
    }
}

/// Removes a scratch directory however the step ends.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        crate::store::remove_tree(&self.0);
    }
}

impl GitSource {
    pub fn new(worker: Arc<Worker>, id: &str, attrs: BTreeMap<String, String>) -> GitSource {
        GitSource {
            worker,
            id: id.to_string(),
            attrs,
            resolved: Default::default(),
        }
    }

    fn spec(&self) -> Result<Spec, OpError> {
        Ok(Spec::parse(&self.id, &self.attrs)?)
    }

    fn scratch(&self) -> Result<TempDir, OpError> {
        let dir = self
            .worker
            .store
            .tmp_dir()
            .join(format!("git-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(dir.join("home")).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(TempDir(dir))
    }

    /// Runs git with the hardened settings; returns stdout. Errors carry the remote's URL.
    async fn git(
        &self,
        spec: &Spec,
        tmp: &Path,
        cwd: Option<&Path>,
        args: &[&str],
    ) -> Result<String, OpError> {
        let mut cmd = tokio::process::Command::new("git");
        cmd.env_clear();
        for (k, v) in std::env::vars_os() {
            let k2 = k.to_string_lossy().to_ascii_uppercase();
            // Proxies and CA settings pass; git's own variables and credentials do not.
            if k2 == "PATH"
                || k2.ends_with("_PROXY")
                || k2 == "SSL_CERT_FILE"
                || k2 == "SSL_CERT_DIR"
            {
                cmd.env(k, v);
            }
        }
        cmd.env("HOME", tmp.join("home"))
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", allowed_protocols())
            .env("GIT_SSH_COMMAND", "false")
            .env("LC_ALL", "C")
            .args([
                "-c",
                "core.hooksPath=/dev/null",
                "-c",
                "credential.helper=",
                "-c",
                "core.fsmonitor=false",
                "-c",
                "init.defaultBranch=main",
                "-c",
                "advice.detachedHead=false",
                "-c",
                "protocol.version=2",
            ])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        if let Some(d) = cwd {
            cmd.current_dir(d);
        }
        let out = cmd
            .output()
            .await
            .map_err(|e| format!("git {}: running git: {e} (is git installed?)", spec.remote))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(format!(
                "git {} ({}): {}",
                args.first().unwrap_or(&""),
                spec.remote,
                tail.join("; ")
            )
            .into());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The commit the ref names now (BuildKit's resolveMetadata: branches win over tags).
    async fn resolve(&self, spec: &Spec) -> Result<Resolved, OpError> {
        let check = |sha: &str, peeled: &str| -> Result<(), OpError> {
            if spec.checksum.is_empty()
                || sha.starts_with(&spec.checksum)
                || (!peeled.is_empty() && peeled.starts_with(&spec.checksum))
            {
                return Ok(());
            }
            Err(format!(
                "git {}: expected checksum to match {}, got {sha}",
                spec.remote, spec.checksum
            )
            .into())
        };
        if is_commit_sha(&spec.git_ref) {
            check(&spec.git_ref, "")?;
            return Ok(Resolved {
                used_ref: None,
                commit: spec.git_ref.clone(),
            });
        }
        if spec.fetch_by_commit {
            if !is_commit_sha(&spec.checksum) {
                return Err(format!(
                    "git {}: fetch-by-commit requires a full commit SHA checksum, got {:?}",
                    spec.remote, spec.checksum
                )
                .into());
            }
            return Ok(Resolved {
                used_ref: None,
                commit: spec.checksum.clone(),
            });
        }
        let tmp = self.scratch()?;
        let r = if spec.git_ref.is_empty() {
            "HEAD"
        } else {
            spec.git_ref.as_str()
        };
        let peeled_arg = format!("{r}^{{}}");
        let out = self
            .git(
                spec,
                &tmp.0,
                None,
                &["ls-remote", "--", &spec.remote, r, &peeled_arg],
            )
            .await?;
        let bare = r.strip_prefix("refs/").unwrap_or(r);
        let partial = format!("refs/{bare}");
        let head = format!("refs/heads/{}", r.strip_prefix("refs/heads/").unwrap_or(r));
        let tag = format!("refs/tags/{}", r.strip_prefix("refs/tags/").unwrap_or(r));
        let tag_peeled = format!("{tag}^{{}}");
        let (mut sha, mut head_sha, mut tag_sha, mut peeled) = (None, None, None, String::new());
        for line in out.lines() {
            let Some((s, name)) = line.split_once('\t') else {
                continue;
            };
            if name == head {
                head_sha = Some(s);
            } else if name == tag {
                tag_sha = Some(s);
            } else if name == tag_peeled {
                peeled = s.to_string();
            } else if name == partial || (r == "HEAD" && name == "HEAD") {
                sha = Some((s, name.to_string()));
            }
        }
        // Branches win over tags, as git checkout prefers them.
        let (sha, used) = match (sha, head_sha, tag_sha) {
            (Some(s), _, _) => {
                peeled.clear();
                s
            }
            (None, Some(s), _) => {
                peeled.clear();
                (s, head)
            }
            (None, None, Some(s)) => (s, tag),
            _ => {
                return Err(
                    format!("git {}: repository does not contain ref {r}", spec.remote).into(),
                );
            }
        };
        if !is_commit_sha(sha) {
            return Err(format!("git {}: invalid commit sha {sha:?}", spec.remote).into());
        }
        check(sha, &peeled)?;
        Ok(Resolved {
            used_ref: Some(used),
            // An annotated tag names a tag object; what is checked out is its commit.
            commit: if peeled.is_empty() {
                sha.to_string()
            } else {
                peeled
            },
        })
    }

    /// Fetches `r.commit` (shallow) into a fresh repository at `wt` and checks it out.
    async fn checkout(
        &self,
        spec: &Spec,
        r: &Resolved,
        tmp: &Path,
        wt: &Path,
    ) -> Result<(), OpError> {
        let wts = wt.to_string_lossy().into_owned();
        self.git(spec, tmp, None, &["init", "-q", "--template=", &wts])
            .await?;
        let fetch = |what: String| {
            let mut args: Vec<String> = ["fetch", "-q", "--depth=1", "--no-tags"]
                .map(String::from)
                .to_vec();
            // The fresh repository's unborn branch may be the one fetched into.
            args.push("--update-head-ok".into());
            args.push("--no-recurse-submodules".into());
            args.push("--".into());
            args.push(spec.remote.clone());
            args.push(what);
            args
        };
        let has_commit = || async {
            let spec_commit = format!("{}^{{commit}}", r.commit);
            self.git(spec, tmp, Some(wt), &["cat-file", "-e", &spec_commit])
                .await
                .is_ok()
        };
        if let Some(used) = &r.used_ref {
            let local = if used.starts_with("refs/heads/") || used.starts_with("refs/tags/") {
                used.clone()
            } else {
                "refs/kiln/fetched".into()
            };
            let args = fetch(format!("+{used}:{local}"));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.git(spec, tmp, Some(wt), &args).await?;
        }
        if !has_commit().await {
            // A commit id, or a ref that moved since it was resolved: ask for the commit.
            let args = fetch(r.commit.clone());
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.git(spec, tmp, Some(wt), &args)
                .await
                .map_err(|e| format!("git {}: fetching commit {}: {e}", spec.remote, r.commit))?;
            if !has_commit().await {
                return Err(
                    format!("git {}: commit {} was not fetched", spec.remote, r.commit).into(),
                );
            }
        }
        let branch = r
            .used_ref
            .as_deref()
            .and_then(|u| u.strip_prefix("refs/heads/"))
            .filter(|_| spec.keep_git_dir);
        match branch {
            Some(b) => {
                self.git(spec, tmp, Some(wt), &["checkout", "-q", "-B", b, &r.commit])
                    .await?
            }
            None => {
                self.git(
                    spec,
                    tmp,
                    Some(wt),
                    &["checkout", "-q", "--detach", &r.commit],
                )
                .await?
            }
        };
        if !spec.skip_submodules && wt.join(".gitmodules").exists() {
            // BuildKit's default; the protocol allowlist and hook settings apply to them too.
            self.git(
                spec,
                tmp,
                Some(wt),
                &["submodule", "update", "--init", "--recursive", "--depth=1"],
            )
            .await?;
        }
        if spec.keep_git_dir {
            self.git(
                spec,
                tmp,
                Some(wt),
                &["remote", "add", "origin", &spec.remote],
            )
            .await?;
        }
        Ok(())
    }
}

/// Moves the checkout (or its subdir) into `dest`; `.git` only when kept.
fn move_tree(wt: &Path, spec: &Spec, dest: &Path) -> Result<(), OpError> {
    let named = |p: &Path, e: std::io::Error| format!("git {}: {}: {e}", spec.remote, p.display());
    let mut src = wt.to_path_buf();
    if !spec.subdir.is_empty() {
        let root = wt.canonicalize().map_err(|e| named(wt, e))?;
        // A symlink in the repository must not lead the subdir out of the checkout.
        let sub = wt
            .join(&spec.subdir)
            .canonicalize()
            .map_err(|e| format!("git {}: subdir {}: {e}", spec.remote, spec.subdir))?;
        if !sub.starts_with(&root) || !sub.is_dir() {
            return Err(format!(
                "git {}: subdir {} is not a directory in the repository",
                spec.remote, spec.subdir
            )
            .into());
        }
        src = sub;
    }
    let keep_git = spec.keep_git_dir && spec.subdir.is_empty();
    for entry in std::fs::read_dir(&src).map_err(|e| named(&src, e))? {
        let entry = entry.map_err(|e| named(&src, e))?;
        if entry.file_name() == ".git" && !keep_git {
            continue;
        }
        let to = dest.join(entry.file_name());
        std::fs::rename(entry.path(), &to).map_err(|e| named(&to, e))?;
    }
    Ok(())
}

#[async_trait]
impl Operation<Ref> for GitSource {
    async fn cache_key(&self, _: &Inputs<'_, Ref>) -> Result<String, OpError> {
        let spec = self.spec()?;
        let r = self.resolve(&spec).await?;
        // With .git kept, the remote and branch are part of the result.
        let key = serde_json::json!({
            "commit": r.commit, "subdir": spec.subdir, "keepgitdir": spec.keep_git_dir,
            "remote": if spec.keep_git_dir { spec.remote.as_str() } else { "" },
            "ref": if spec.keep_git_dir { r.used_ref.clone() } else { None },
            "submodules": !spec.skip_submodules,
        });
        *self.resolved.lock().await = Some(r);
        Ok(format!(
            "git:sha256:{}",
            hex::encode(Sha256::digest(key.to_string().as_bytes()))
        ))
    }

    async fn execute(&self, _: &Inputs<'_, Ref>, ctx: &ExecContext) -> Result<Vec<Ref>, OpError> {
        let spec = self.spec()?;
        let resolved = self.resolved.lock().await.clone();
        let r = match resolved {
            Some(r) => r,
            None => self.resolve(&spec).await?,
        };
        ctx.progress.send(
            &ctx.vertex,
            "",
            EventKind::Info {
                message: format!("fetching {} at {}", spec.remote, r.commit),
            },
        );
        let tmp = self.scratch()?;
        let wt = tmp.0.join("wt");
        self.checkout(&spec, &r, &tmp.0, &wt).await?;
        let store = self.worker.store.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<Ref>, OpError> {
            let layer = store.new_layer()?;
            move_tree(&wt, &spec, &layer.dir)?;
            store.finish_layer(&layer);
            drop(tmp);
            Ok(vec![Ref::scratch().with_layer(&layer.id)])
        })
        .await?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn spec_from_identifier_and_attrs() {
        let s = Spec::parse(
            "github.com/a/b.git#v1:x/../y/",
            &attrs(&[
                ("git.fullurl", "https://github.com/a/b.git"),
                ("git.keepgitdir", "true"),
                ("git.authtokensecret", "GIT_AUTH_TOKEN"),
            ]),
        )
        .unwrap();
        assert_eq!(s.remote, "https://github.com/a/b.git");
        assert_eq!((s.git_ref.as_str(), s.subdir.as_str()), ("v1", "y"));
        assert!(s.keep_git_dir);
        assert_eq!(clean_subdir("../../etc"), "etc");
    }

    #[test]
    fn protocols_are_restricted() {
        for bad in ["ext::sh -c id", "file:///etc", "ssh://h/r.git", "fd::3"] {
            let e = Spec::parse("h/r.git", &attrs(&[("git.fullurl", bad)]));
            assert!(e.is_err(), "{bad} accepted");
        }
        assert!(Spec::parse("h/r.git", &attrs(&[("git.checksum", "xyz")])).is_err());
        assert!(Spec::parse("h/r.git", &attrs(&[("git.sig.pubkey", "k")])).is_err());
        assert!(is_commit_sha(&"a".repeat(40)) && !is_commit_sha("abc"));
    }
}
