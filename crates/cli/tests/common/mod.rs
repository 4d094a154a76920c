//! Shared helpers for the `kiln` integration tests: the binary, a registry per test binary,
//! fresh stores, build projects, commands with timeouts, leftover checks (mounts, runc
//! containers, temp files), and building conformance cases (cases.rs).
//!
//! These tests need root, runc, Debian's docker-registry, skopeo, umoci, python3 and openssl.

#![allow(dead_code)]

mod auth;
pub mod bearer;
mod cases;

#[allow(unused_imports)] // not every test binary uses them
pub use auth::*;
#[allow(unused_imports)]
pub use cases::*;
use kiln_testkit::Registry;
use serde_json::Value;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The `kiln` binary under test.
pub const KILN: &str = env!("CARGO_BIN_EXE_kiln");

/// How long any single kiln command may take before the test gives up on it.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(120);

pub fn repo_root() -> PathBuf {
    kiln_testkit::repo_root()
}

// ---------------------------------------------------------------------------------------------
// Registries

/// Processes this test binary started that must not outlive it (registries).
static OWNED: Mutex<Vec<Owned>> = Mutex::new(Vec::new());

enum Owned {
    Registry(Box<Registry>),
    Child(Child, tempfile::TempDir),
}

extern "C" fn stop_owned() {
    let taken = match OWNED.lock() {
        Ok(mut g) => std::mem::take(&mut *g),
        Err(_) => return,
    };
    for o in taken {
        match o {
            Owned::Registry(r) => drop(r),
            Owned::Child(mut c, dir) => {
                let _ = c.kill();
                let _ = c.wait();
                drop(dir);
            }
        }
    }
}

fn own(o: Owned) {
    static HOOK: OnceLock<()> = OnceLock::new();
    HOOK.get_or_init(|| {
        // SAFETY: registering a plain extern "C" function with no arguments.
        unsafe {
            libc::atexit(stop_owned);
        }
    });
    OWNED.lock().unwrap().push(o);
}

/// `localhost:PORT` of this test binary's registry, which holds `busybox:latest`. Started on
/// first use and stopped when the test binary exits.
pub fn registry_host() -> &'static str {
    static HOST: OnceLock<String> = OnceLock::new();
    HOST.get_or_init(|| {
        let r = Registry::with_busybox().expect("starting the test registry with busybox");
        let host = r.host();
        own(Owned::Registry(Box::new(r)));
        host
    })
}

fn http_answers(addr: &str) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &addr.parse().expect("socket address"),
        Duration::from_millis(500),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).is_ok() && buf.starts_with(b"HTTP/1.")
}

fn busybox_digest_at_5000() -> Option<String> {
    let out = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "docker://localhost:5000/busybox:latest",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v["Digest"].as_str().map(str::to_string)
}

/// Makes sure a registry on 127.0.0.1:5000 serves `localhost:5000/busybox:latest` with the digest
/// the conformance cases pin (raw llb.pb files name it). Reuses one that already answers (as
/// run-cases.sh does); otherwise starts one for the life of this test binary.
pub fn ensure_registry_5000() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        if !http_answers("127.0.0.1:5000") {
            let dir = tempfile::tempdir().unwrap();
            let config = dir.path().join("config.yml");
            std::fs::write(
                &config,
                format!(
                    "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:5000\n",
                    dir.path().join("data").display()
                ),
            )
            .unwrap();
            let child = Command::new("docker-registry")
                .arg("serve")
                .arg(&config)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting docker-registry on 127.0.0.1:5000");
            own(Owned::Child(child, dir));
            let deadline = Instant::now() + Duration::from_secs(15);
            while !http_answers("127.0.0.1:5000") {
                assert!(
                    Instant::now() < deadline,
                    "docker-registry did not answer on 127.0.0.1:5000"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        if busybox_digest_at_5000().is_none() {
            let layout = tempfile::tempdir().unwrap();
            kiln_testkit::busybox_layout(layout.path()).expect("making the busybox layout");
            let out = Command::new("skopeo")
                .args(["copy", "-q", "--dest-tls-verify=false"])
                .arg(format!("oci:{}:latest", layout.path().display()))
                .arg("docker://localhost:5000/busybox:latest")
                .output()
                .expect("running skopeo");
            assert!(
                out.status.success(),
                "pushing busybox to localhost:5000: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        assert_eq!(
            busybox_digest_at_5000().as_deref(),
            Some(kiln_testkit::BUSYBOX_DIGEST),
            "localhost:5000/busybox:latest is not the base image the cases were made against"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// Running commands

/// A finished command.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    /// Panics with the stderr unless the command succeeded.
    #[track_caller]
    pub fn assert_ok(&self) -> &Run {
        assert!(
            self.status.success(),
            "command failed ({}):\n{}",
            self.status,
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn assert_failed(&self) -> &Run {
        assert!(
            !self.status.success(),
            "command unexpectedly succeeded:\n{}",
            self.stderr
        );
        self
    }
}

/// A spawned command whose output is collected in the background.
pub struct Running {
    pub child: Child,
    stdout: std::thread::JoinHandle<Vec<u8>>,
    stderr: std::thread::JoinHandle<Vec<u8>>,
    stderr_so_far: std::sync::Arc<Mutex<Vec<u8>>>,
    started: Instant,
}

impl Running {
    pub fn spawn(cmd: &mut Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning command");
        let mut out = child.stdout.take().unwrap();
        let mut err = child.stderr.take().unwrap();
        let so_far = std::sync::Arc::new(Mutex::new(Vec::new()));
        let so_far2 = so_far.clone();
        let stdout = std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = out.read_to_end(&mut v);
            v
        });
        let stderr = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match err.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => so_far2.lock().unwrap().extend_from_slice(&buf[..n]),
                }
            }
            so_far2.lock().unwrap().clone()
        });
        Running {
            child,
            stdout,
            stderr,
            stderr_so_far: so_far,
            started: Instant::now(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The stderr written so far.
    pub fn stderr_now(&self) -> String {
        String::from_utf8_lossy(&self.stderr_so_far.lock().unwrap()).into_owned()
    }

    /// Polls until `pred(stderr so far)` holds; panics after `timeout`.
    #[track_caller]
    pub fn wait_for_stderr(&mut self, timeout: Duration, pred: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.stderr_now();
            if pred(&now) {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("process exited ({status}) before the expected output:\n{now}");
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("timed out waiting for output; stderr so far:\n{now}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let r = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(r, 0, "kill({}, {sig})", self.pid());
    }

    /// Waits for the process; kills it and panics after `timeout`.
    #[track_caller]
    pub fn wait(mut self, timeout: Duration) -> Run {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("waiting for child") {
                break s;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "command did not finish within {timeout:?}; stderr:\n{}",
                    self.stderr_now()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let elapsed = self.started.elapsed();
        // A grandchild (a runc left running by a killed kiln) may hold the pipes open: give
        // the readers a moment, then take what arrived.
        let grace = Instant::now() + Duration::from_secs(5);
        while !(self.stdout.is_finished() && self.stderr.is_finished()) && Instant::now() < grace {
            std::thread::sleep(Duration::from_millis(10));
        }
        let so_far = self.stderr_now();
        let stdout = if self.stdout.is_finished() {
            self.stdout.join().unwrap_or_default()
        } else {
            Vec::new()
        };
        let stderr = if self.stderr.is_finished() {
            String::from_utf8_lossy(&self.stderr.join().unwrap_or_default()).into_owned()
        } else {
            so_far
        };
        Run {
            status,
            stdout,
            stderr,
            elapsed,
        }
    }
}

/// Runs a command to completion (stdin from /dev/null unless set), with a timeout.
#[track_caller]
pub fn run(cmd: &mut Command, timeout: Duration) -> Run {
    Running::spawn(cmd).wait(timeout)
}

// ---------------------------------------------------------------------------------------------
// Stores

/// A fresh store root for one test.
pub struct Store {
    pub dir: tempfile::TempDir,
}

impl Default for Store {
    fn default() -> Self {
        Store::new()
    }
}

impl Store {
    pub fn new() -> Store {
        Store {
            dir: tempfile::Builder::new()
                .prefix("kiln-test-store-")
                .tempdir()
                .unwrap(),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// `kiln` with this store and none of the test runner's KILN_* settings.
    pub fn kiln(&self) -> Command {
        let mut c = Command::new(KILN);
        c.env("KILN_ROOT", self.root())
            .env_remove("KILN_RUNTIME")
            .env_remove("KILN_PARALLELISM")
            .env_remove("KILN_FAILPOINT")
            .stdin(Stdio::null());
        c
    }

    /// Mount points at or under the store (from /proc/self/mountinfo).
    pub fn mounts(&self) -> Vec<String> {
        let root = self.root().to_string_lossy().into_owned();
        let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        info.lines()
            .filter(|l| l.contains(&root))
            .map(str::to_string)
            .collect()
    }

    /// Containers runc knows in the store's runc state root.
    pub fn containers(&self) -> Vec<String> {
        let state = self.root().join("runc");
        if !state.exists() {
            return Vec::new();
        }
        let out = Command::new("runc")
            .arg("--root")
            .arg(&state)
            .args(["list", "-q"])
            .output()
            .expect("running runc list");
        assert!(
            out.status.success(),
            "runc list: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Entries left in the store's `tmp/` and `ingest/`.
    pub fn temp_files(&self) -> Vec<String> {
        let mut v = Vec::new();
        for sub in ["tmp", "ingest"] {
            if let Ok(rd) = std::fs::read_dir(self.root().join(sub)) {
                for e in rd.flatten() {
                    v.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
        v
    }

    /// Asserts no mount of the store survives.
    #[track_caller]
    pub fn assert_no_mounts(&self) {
        let m = self.mounts();
        assert!(
            m.is_empty(),
            "mounts under the store remain:\n{}",
            m.join("\n")
        );
    }

    /// Asserts no runc container of the store exists.
    #[track_caller]
    pub fn assert_no_containers(&self) {
        let c = self.containers();
        assert!(c.is_empty(), "runc containers remain: {c:?}");
    }

    #[track_caller]
    pub fn assert_no_temp_files(&self) {
        let t = self.temp_files();
        assert!(t.is_empty(), "temp files remain in the store: {t:?}");
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Best effort, so a failed test does not leave containers or mounts behind.
        for id in self.containers_quiet() {
            let _ = Command::new("runc")
                .arg("--root")
                .arg(self.root().join("runc"))
                .args(["delete", "--force", &id])
                .output();
        }
        let mut points: Vec<String> = self
            .mounts()
            .iter()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .collect();
        points.reverse();
        for p in points {
            let _ = Command::new("umount").args(["-l", &p]).output();
        }
    }
}

impl Store {
    fn containers_quiet(&self) -> Vec<String> {
        Command::new("runc")
            .arg("--root")
            .arg(self.root().join("runc"))
            .args(["list", "-q"])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------------------------
// Projects

/// A build context (with its Dockerfile) and a separate output directory.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    /// A context holding `Dockerfile` and `files` (path, content).
    pub fn new(dockerfile: &str, files: &[(&str, &str)]) -> Project {
        let dir = tempfile::Builder::new()
            .prefix("kiln-test-proj-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join("ctx")).unwrap();
        std::fs::create_dir_all(dir.path().join("out")).unwrap();
        let p = Project { dir };
        p.write("Dockerfile", dockerfile);
        for (path, content) in files {
            p.write(path, content);
        }
        p
    }

    pub fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    pub fn out_dir(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    pub fn out(&self, name: &str) -> PathBuf {
        self.out_dir().join(name)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.ctx().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// `kiln build --progress plain -o type=oci,dest=out/NAME [extra…] CTX`.
    pub fn build_cmd(&self, store: &Store, out: &str, extra: &[&str]) -> Command {
        self.build_cmd_output(
            store,
            &format!("type=oci,dest={}", self.out(out).display()),
            extra,
        )
    }

    /// `kiln build --progress plain -o OUTPUT [extra…] CTX`.
    pub fn build_cmd_output(&self, store: &Store, output: &str, extra: &[&str]) -> Command {
        let mut c = store.kiln();
        c.args(["build", "--progress", "plain", "-o", output])
            .args(extra)
            .arg(self.ctx());
        c
    }

    pub fn build(&self, store: &Store, out: &str, extra: &[&str]) -> Run {
        run(&mut self.build_cmd(store, out, extra), BUILD_TIMEOUT)
    }
}

// ---------------------------------------------------------------------------------------------
// Images

/// `imgtree.py IMAGE` as JSON.
#[track_caller]
pub fn imgtree(image: &Path) -> Value {
    let out = Command::new("python3")
        .arg(repo_root().join("conformance/tools/imgtree.py"))
        .arg(image)
        .output()
        .expect("running imgtree.py");
    assert!(
        out.status.success(),
        "imgtree.py {}: {}",
        image.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("imgtree.py output is JSON")
}

/// The RUN steps (`#N [..] RUN …` headers) that plain progress reports as CACHED / not cached.
pub fn steps(stderr: &str) -> Vec<(String, bool)> {
    let mut names: Vec<(String, String)> = Vec::new();
    let mut cached = std::collections::HashSet::new();
    for line in stderr.lines() {
        let Some(rest) = line.strip_prefix('#') else {
            continue;
        };
        let Some((num, text)) = rest.split_once(' ') else {
            continue;
        };
        if text == "CACHED" {
            cached.insert(num.to_string());
        } else if text.starts_with('[') && !names.iter().any(|(n, _)| n == num) {
            names.push((num.to_string(), text.to_string()));
        }
    }
    names
        .into_iter()
        .map(|(n, t)| {
            let c = cached.contains(&n);
            (t, c)
        })
        .collect()
}

/// A free loopback TCP port (bound then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// Builds `p` into `s` with `KILN_FAILPOINT=failpoint`; the build must abort there (SIGABRT).
#[track_caller]
pub fn build_aborting_at(p: &Project, s: &Store, failpoint: &str) -> Run {
    use std::os::unix::process::ExitStatusExt;
    let r = run(
        p.build_cmd(s, "out.tar", &[])
            .env("KILN_FAILPOINT", failpoint),
        BUILD_TIMEOUT,
    );
    assert_eq!(
        r.status.signal(),
        Some(libc::SIGABRT),
        "KILN_FAILPOINT={failpoint}: the build must abort there, got {}:\n{}",
        r.status,
        r.stderr
    );
    r
}
