//! ADD from URLs and Git repositories, against servers the tests start: a small HTTP server
//! (ETags, request counts) and `git daemon` over a repository made here.
//!
//! These tests need root, runc, Debian's docker-registry, skopeo, umoci, python3 and git.

mod common;

use common::*;
use kiln_testkit::RuntimeLog;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// HTTP

#[derive(Default)]
struct Served {
    /// path -> (body, ETag)
    files: HashMap<String, (Vec<u8>, String)>,
    /// Responses with a body (200) and without (304).
    full: usize,
    not_modified: usize,
}

struct HttpServer {
    port: u16,
    state: Arc<Mutex<Served>>,
}

impl HttpServer {
    fn start() -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(Served::default()));
        let st = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let _ = serve(conn, &st);
            }
        });
        HttpServer { port, state }
    }

    fn put(&self, path: &str, body: &str, etag: &str) {
        self.state
            .lock()
            .unwrap()
            .files
            .insert(path.into(), (body.as_bytes().to_vec(), etag.into()));
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn counts(&self) -> (usize, usize) {
        let s = self.state.lock().unwrap();
        (s.full, s.not_modified)
    }
}

/// One request per connection, answered with `Connection: close`.
fn serve(conn: std::net::TcpStream, state: &Mutex<Served>) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let mut if_none_match = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':')
            && k.eq_ignore_ascii_case("if-none-match")
        {
            if_none_match = Some(v.trim().to_string());
        }
    }
    let mut s = state.lock().unwrap();
    let mut out = conn;
    match s.files.get(&path).cloned() {
        None => write!(
            out,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
        Some((_, etag)) if if_none_match.as_deref() == Some(etag.as_str()) => {
            s.not_modified += 1;
            write!(
                out,
                "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
            )?
        }
        Some((body, etag)) => {
            s.full += 1;
            write!(
                out,
                "HTTP/1.1 200 OK\r\nETag: {etag}\r\nContent-Length: {}\r\nLast-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nConnection: close\r\n\r\n",
                body.len()
            )?;
            out.write_all(&body)?;
        }
    }
    out.flush()
}

fn base() -> String {
    format!("{}/busybox", registry_host())
}

/// A store, a runtime wrapper counting containers, and a local export directory.
struct Env {
    store: Store,
    log: RuntimeLog,
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let log = RuntimeLog::create(dir.path()).expect("runtime wrapper");
        Env {
            store: Store::new(),
            log,
            dir,
        }
    }

    fn out(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    /// Builds into `out/` (replaced) and returns the run and how many containers ran.
    fn build(&self, p: &Project, env: &[(&str, &str)]) -> (Run, usize) {
        let _ = std::fs::remove_dir_all(self.out());
        self.log.clear();
        let mut c = p.build_cmd_output(
            &self.store,
            &format!("type=local,dest={}", self.out().display()),
            &[],
        );
        c.env("KILN_RUNTIME", &self.log.wrapper);
        for (k, v) in env {
            c.env(k, v);
        }
        let r = run(&mut c, BUILD_TIMEOUT);
        (r, self.log.runs())
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.out().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
}

#[test]
fn add_url_downloads_once_and_rebuilds_on_change() {
    let http = HttpServer::start();
    http.put("/f.txt", "hello\n", "\"v1\"");
    let p = Project::new(
        &format!(
            "FROM {}\nADD {} /x/\nRUN cp /x/f.txt /copied\n",
            base(),
            http.url("/f.txt")
        ),
        &[],
    );
    let env = Env::new();

    let (r, runs) = env.build(&p, &[]);
    r.assert_ok();
    assert_eq!(runs, 1);
    assert_eq!(env.read("x/f.txt"), "hello\n");
    assert_eq!(env.read("copied"), "hello\n");
    let meta = std::fs::metadata(env.out().join("x/f.txt")).unwrap();
    assert_eq!(
        meta.permissions().mode() & 0o7777,
        0o600,
        "BuildKit's default mode"
    );
    assert_eq!(meta.mtime(), 784111777, "mtime from Last-Modified");
    assert_eq!(http.counts(), (1, 0));

    // Same content: the server answers 304 to the ETag and nothing runs again.
    let (r, runs) = env.build(&p, &[]);
    r.assert_ok();
    assert_eq!(runs, 0, "{}", r.stderr);
    assert_eq!(http.counts(), (1, 1));

    // New content: downloaded, and what reads it reruns.
    http.put("/f.txt", "changed\n", "\"v2\"");
    let (r, runs) = env.build(&p, &[]);
    r.assert_ok();
    assert_eq!(runs, 1);
    assert_eq!(env.read("copied"), "changed\n");
    assert_eq!(
        http.counts(),
        (2, 1),
        "the old ETag no longer matches: a full answer"
    );
}

#[test]
fn add_url_checksum_is_verified() {
    let http = HttpServer::start();
    http.put("/f.txt", "hello\n", "\"v1\"");
    let env = Env::new();
    let url = http.url("/f.txt");
    let bad = format!("sha256:{}", "0".repeat(64));
    let p = Project::new(
        &format!("FROM {}\nADD --checksum={bad} {url} /x/\n", base()),
        &[],
    );
    let (r, _) = env.build(&p, &[]);
    r.assert_failed();
    assert!(
        r.stderr.contains("digest mismatch") && r.stderr.contains(&url),
        "{}",
        r.stderr
    );
    env.store.assert_no_temp_files();
    // The right checksum (sha256 of "hello\n") passes; a file name from --chmod stays.
    let good = "sha256:5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";
    let p = Project::new(
        &format!(
            "FROM {}\nADD --checksum={good} --chmod=644 {url} /y\n",
            base()
        ),
        &[],
    );
    let (r, _) = env.build(&p, &[]);
    r.assert_ok();
    assert_eq!(env.read("y"), "hello\n");
    let mode = std::fs::metadata(env.out().join("y"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
}

// ---------------------------------------------------------------------------------------------
// Git

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .output()
        .expect("running git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `git daemon` exporting `base`; killed on drop.
struct GitDaemon {
    child: Child,
    port: u16,
}

impl GitDaemon {
    fn start(base: &Path) -> GitDaemon {
        let port = free_port();
        let child = Command::new("git")
            .args([
                "daemon",
                "--reuseaddr",
                "--export-all",
                "--listen=127.0.0.1",
            ])
            .arg(format!("--port={port}"))
            .arg(format!("--base-path={}", base.display()))
            .arg(base)
            .spawn()
            .expect("git daemon");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return GitDaemon { child, port };
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut d = GitDaemon { child, port };
        let _ = d.child.kill();
        let _ = d.child.wait();
        panic!("git daemon did not listen on {}", d.port);
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn add_git_checks_out_refs_subdirs_and_keeps_git_dir_on_request() {
    let repos = tempfile::tempdir().unwrap();
    let work = repos.path().join("work");
    std::fs::create_dir_all(work.join("sub")).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(work.join("a.txt"), "one\n").unwrap();
    std::fs::write(work.join("sub/b.txt"), "b\n").unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "-q", "-m", "one"]);
    git(&work, &["tag", "-a", "v1", "-m", "v1"]);
    std::fs::write(work.join("a.txt"), "two\n").unwrap();
    git(&work, &["commit", "-q", "-am", "two"]);
    git(repos.path(), &["clone", "-q", "--bare", "work", "repo.git"]);
    let daemon = GitDaemon::start(repos.path());
    let url = format!("git://127.0.0.1:{}/repo.git", daemon.port);

    let p = Project::new(
        &format!(
            "FROM {}\nADD {url}#v1 /v1\nADD --keep-git-dir {url}#main /main\nADD {url}#v1:sub /sub\nRUN cat /main/a.txt > /seen\n",
            base()
        ),
        &[],
    );
    let env = Env::new();
    let (r, runs) = env.build(&p, &[]);
    r.assert_ok();
    assert_eq!(runs, 1);
    assert_eq!(env.read("v1/a.txt"), "one\n", "the annotated tag's commit");
    assert!(!env.out().join("v1/.git").exists(), ".git only on request");
    assert_eq!(env.read("main/a.txt"), "two\n");
    assert!(env.out().join("main/.git/HEAD").is_file(), "--keep-git-dir");
    assert_eq!(env.read("sub/b.txt"), "b\n");
    assert!(!env.out().join("sub/a.txt").exists(), "only the subdir");
    assert_eq!(env.read("seen"), "two\n");

    // Nothing moved: cached.
    let (r, runs) = env.build(&p, &[]);
    r.assert_ok();
    assert_eq!(runs, 0, "{}", r.stderr);

    // main moves: what reads it reruns.
    std::fs::write(work.join("a.txt"), "three\n").unwrap();
    git(&work, &["commit", "-q", "-am", "three"]);
    git(&work, &["push", "-q", "../repo.git", "main"]);
    let (r, runs) = env.build(&p, &[]);
    r.assert_ok();
    assert_eq!(runs, 1);
    assert_eq!(env.read("seen"), "three\n");
    assert_eq!(env.read("v1/a.txt"), "one\n");

    // A ref the repository does not have fails and names the remote.
    let p = Project::new(&format!("FROM {}\nADD {url}#nope /x\n", base()), &[]);
    let (r, _) = env.build(&p, &[]);
    r.assert_failed();
    assert!(
        r.stderr.contains("does not contain ref nope") && r.stderr.contains(&url),
        "{}",
        r.stderr
    );
    // Scratch repositories are removed whether the step succeeds or fails.
    env.store.assert_no_temp_files();
}
