//! `kiln build` end to end: what the cache does (observed by counting runc runs through a logging
//! runtime wrapper, never assumed), parallelism, failures, interruption, concurrent builds on one
//! store, and error messages for bad input.

mod common;

use common::*;
use kiln_testkit::RuntimeLog;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// A store plus a runtime wrapper that counts containers.
struct Counted {
    store: Store,
    log: RuntimeLog,
    _dir: tempfile::TempDir,
}

impl Counted {
    fn new() -> Counted {
        let dir = tempfile::tempdir().unwrap();
        let log = RuntimeLog::create(dir.path()).expect("runtime wrapper");
        Counted {
            store: Store::new(),
            log,
            _dir: dir,
        }
    }

    fn cmd(&self, p: &Project, out: &str, extra: &[&str]) -> Command {
        let mut c = p.build_cmd(&self.store, out, extra);
        c.env("KILN_RUNTIME", &self.log.wrapper);
        c
    }

    /// Builds and returns (the run, how many containers it ran).
    fn build(&self, p: &Project, extra: &[&str]) -> (Run, usize) {
        self.log.clear();
        let r = run(&mut self.cmd(p, "out.tar", extra), BUILD_TIMEOUT);
        (r, self.log.runs())
    }

    /// Builds, which must succeed, and returns how many containers ran.
    #[track_caller]
    fn runs(&self, p: &Project, extra: &[&str]) -> usize {
        let (r, n) = self.build(p, extra);
        r.assert_ok();
        n
    }
}

fn from() -> String {
    format!("{}/busybox", registry_host())
}

/// The step headers of plain progress, without `[internal]` ones: (name, cached).
fn user_steps(stderr: &str) -> Vec<(String, bool)> {
    steps(stderr)
        .into_iter()
        .filter(|(n, _)| !n.starts_with("[internal]"))
        .collect()
}

fn run_steps(stderr: &str) -> Vec<(String, bool)> {
    user_steps(stderr)
        .into_iter()
        .filter(|(n, _)| n.contains("] RUN "))
        .collect()
}

#[track_caller]
fn untar(tar: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(tar)
        .arg("-C")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "tar: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------------

fn multistage_dockerfile() -> String {
    format!(
        r#"FROM {b} AS builder
WORKDIR /src
COPY app.txt .
RUN tr a-z A-Z < app.txt > upper.txt && chown 7:8 upper.txt
FROM {b}
ENV GREETING=hello
WORKDIR /app
COPY --from=builder /src/upper.txt ./upper.txt
COPY conf/ ./conf/
RUN echo "$GREETING from $(whoami)" > greeting.txt
USER nobody
CMD ["cat", "/app/greeting.txt"]
"#,
        b = from()
    )
}

/// A multi-stage build, built twice: the second runs nothing and reports every step CACHED;
/// the image reads with skopeo and unpacks with umoci with the expected files and history.
#[test]
fn multistage_rebuild_is_cached_and_image_is_valid() {
    let p = Project::new(
        &multistage_dockerfile(),
        &[("app.txt", "make me loud\n"), ("conf/a.conf", "x=1\n")],
    );
    let c = Counted::new();
    let output = format!(
        "type=oci,dest={},name=test:latest",
        p.out("img.tar").display()
    );
    let mut cmd2 = p.build_cmd_output(&c.store, &output, &[]);
    cmd2.env("KILN_RUNTIME", &c.log.wrapper);

    c.log.clear();
    let first = run(&mut cmd2, BUILD_TIMEOUT);
    first.assert_ok();
    assert_eq!(c.log.runs(), 2, "first build runs both RUN steps");
    let first_steps = user_steps(&first.stderr);
    assert!(!first_steps.is_empty(), "no steps in:\n{}", first.stderr);

    c.log.clear();
    let second = run(&mut cmd2, BUILD_TIMEOUT);
    second.assert_ok();
    assert_eq!(c.log.runs(), 0, "second build runs no container");
    let second_steps = user_steps(&second.stderr);
    let names = |v: &[(String, bool)]| {
        let mut n: Vec<String> = v.iter().map(|s| s.0.clone()).collect();
        n.sort();
        n
    };
    assert_eq!(
        names(&second_steps),
        names(&first_steps),
        "the same steps both times"
    );
    assert_eq!(first_steps.len(), 8, "{}", first.stderr);
    for (name, cached) in &second_steps {
        assert!(cached, "step {name:?} is not CACHED:\n{}", second.stderr);
    }

    let img = p.out("img.tar");
    let inspect = run(
        Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", img.display())),
        Duration::from_secs(60),
    );
    inspect.assert_ok();
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v["Architecture"], "amd64");
    assert_eq!(v["Os"], "linux");

    let work = tempfile::tempdir().unwrap();
    let layout = work.path().join("layout");
    untar(&img, &layout);
    let bundle = work.path().join("bundle");
    let unpack = run(
        Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:latest", layout.display()))
            .arg(&bundle),
        Duration::from_secs(60),
    );
    unpack.assert_ok();
    let rootfs = bundle.join("rootfs");
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/upper.txt")).unwrap(),
        "MAKE ME LOUD\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/greeting.txt")).unwrap(),
        "hello from root\n"
    );
    assert_eq!(
        std::fs::read_to_string(rootfs.join("app/conf/a.conf")).unwrap(),
        "x=1\n"
    );
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(rootfs.join("app/upper.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (7, 8), "COPY --from keeps the owner");
    assert!(
        !rootfs.join("src").exists(),
        "the builder stage is not in the image"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["process"]["cwd"], "/app");
    assert_eq!(
        config["process"]["args"],
        serde_json::json!(["cat", "/app/greeting.txt"])
    );

    let tree = imgtree(&img);
    let created: Vec<&str> = tree["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    let want_tail = [
        "ENV GREETING=hello",
        "WORKDIR /app",
        "COPY /src/upper.txt ./upper.txt # buildkit",
        "COPY conf/ ./conf/ # buildkit",
        "RUN /bin/sh -c echo \"$GREETING from $(whoami)\" > greeting.txt # buildkit",
        "USER nobody",
        "CMD [\"cat\" \"/app/greeting.txt\"]",
    ];
    assert!(
        created.len() > want_tail.len(),
        "history too short: {created:#?}"
    );
    assert_eq!(
        &created[created.len() - want_tail.len()..],
        &want_tail[..],
        "history created_by"
    );
    assert_eq!(tree["config"]["User"], "nobody");
    assert_eq!(tree["config"]["WorkingDir"], "/app");
}

// ---------------------------------------------------------------------------------------------
// What invalidates the cache

fn cache_project() -> Project {
    Project::new(
        &format!(
            r#"FROM {}
COPY a.txt /a.txt
RUN cat /a.txt > /a.copy
COPY b.txt /b.txt
RUN cat /b.txt > /b.copy
RUN echo done > /done
"#,
            from()
        ),
        &[("a.txt", "a\n"), ("b.txt", "b\n"), ("unused.txt", "u\n")],
    )
}

/// Builds the project once (3 runs), then applies `change` and rebuilds; returns the
/// rebuild's run count and its stderr.
fn rebuild_after(change: impl FnOnce(&Project)) -> (usize, String) {
    let p = cache_project();
    let c = Counted::new();
    assert_eq!(c.runs(&p, &[]), 3, "baseline build runs all three RUNs");
    change(&p);
    let (r, n) = c.build(&p, &[]);
    r.assert_ok();
    (n, r.stderr)
}

#[test]
fn editing_a_copied_file_reruns_exactly_the_runs_after_it() {
    let (n, stderr) = rebuild_after(|p| p.write("b.txt", "b changed\n"));
    assert_eq!(n, 2, "the two RUNs after COPY b.txt rerun:\n{stderr}");
    let runs = run_steps(&stderr);
    assert_eq!(runs.len(), 3, "{stderr}");
    assert!(runs[0].1, "RUN cat /a.txt stays cached:\n{stderr}");
    assert!(!runs[1].1 && !runs[2].1, "later RUNs rerun:\n{stderr}");
}

#[test]
fn editing_the_first_copied_file_reruns_all_runs() {
    let (n, stderr) = rebuild_after(|p| p.write("a.txt", "a changed\n"));
    assert_eq!(n, 3, "{stderr}");
}

#[test]
fn chmod_of_a_copied_file_reruns() {
    let (n, stderr) = rebuild_after(|p| {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            p.ctx().join("b.txt"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    });
    assert_eq!(
        n, 2,
        "mode is content: the RUNs after COPY b.txt rerun:\n{stderr}"
    );
}

#[test]
fn touch_of_a_copied_file_reruns_nothing() {
    let (n, stderr) = rebuild_after(|p| {
        let f = std::fs::File::options()
            .write(true)
            .open(p.ctx().join("a.txt"))
            .unwrap();
        f.set_modified(std::time::SystemTime::now() + Duration::from_secs(3600))
            .unwrap();
    });
    assert_eq!(n, 0, "mtime is not content:\n{stderr}");
}

#[test]
fn editing_an_unused_context_file_reruns_nothing() {
    let (n, stderr) = rebuild_after(|p| p.write("unused.txt", "changed\n"));
    assert_eq!(n, 0, "{stderr}");
}

#[test]
fn chown_of_a_context_file_reruns_nothing() {
    // The context is sent with owners reset to 0:0, so a chown changes nothing copied.
    let (n, stderr) = rebuild_after(|p| {
        std::os::unix::fs::chown(p.ctx().join("a.txt"), Some(1234), Some(4321)).unwrap();
    });
    assert_eq!(n, 0, "{stderr}");
}

#[test]
fn chown_in_an_earlier_stage_reruns_after_copy_from() {
    let p = Project::new(
        &format!(
            r#"FROM {b} AS prep
ARG OWNER=10
COPY data.txt /data.txt
RUN chown $OWNER:$OWNER /data.txt
FROM {b}
COPY --from=prep /data.txt /data.txt
RUN ls -n /data.txt | awk '{{print $3":"$4}}' > /owner
"#,
            b = from()
        ),
        &[("data.txt", "d\n")],
    );
    let c = Counted::new();
    assert_eq!(c.runs(&p, &[]), 2);
    assert_eq!(c.runs(&p, &[]), 0, "unchanged: nothing reruns");
    let (r, n) = c.build(&p, &["--build-arg", "OWNER=20"]);
    r.assert_ok();
    assert_eq!(
        n, 2,
        "the chown reruns, and the copied file's new owner reruns the RUN after COPY --from:\n{}",
        r.stderr
    );
    let tree = imgtree(&p.out("out.tar"));
    assert_eq!(tree["rootfs"]["data.txt"]["uid"], 20);
    assert_eq!(
        tree["rootfs"]["owner"]["size"], 6,
        "owner file holds \"20:20\\n\""
    );
}

#[test]
fn no_cache_reruns_everything() {
    let p = cache_project();
    let c = Counted::new();
    assert_eq!(c.runs(&p, &[]), 3);
    assert_eq!(c.runs(&p, &[]), 0);
    let (r, n) = c.build(&p, &["--no-cache"]);
    r.assert_ok();
    assert_eq!(n, 3, "--no-cache runs every RUN:\n{}", r.stderr);
    assert!(
        user_steps(&r.stderr).iter().all(|(_, cached)| !cached),
        "no step is CACHED with --no-cache:\n{}",
        r.stderr
    );
}

// ---------------------------------------------------------------------------------------------
// Parallelism

fn meeting_project() -> Project {
    let port = free_port();
    Project::new(
        &format!(
            r#"FROM {b} AS server
RUN timeout 10 nc -l -p {port} > /got && cat /got
FROM {b} AS client
RUN timeout 10 sh -c 'until echo hi | nc 127.0.0.1 {port}; do sleep 0.1; done' && echo sent > /sent
FROM {b}
COPY --from=server /got /got
COPY --from=client /sent /sent
"#,
            b = from()
        ),
        &[],
    )
}

// `timeout` must not be PID 1 of the container (PID 1 ignores SIGTERM): `&& …` after each
// command keeps the shell as PID 1.
#[test]
fn independent_stages_run_in_parallel() {
    let p = meeting_project();
    let s = Store::new();
    let r = p.build(&s, "out.tar", &[]);
    r.assert_ok();
    let tree = imgtree(&p.out("out.tar"));
    assert_eq!(
        tree["rootfs"]["got"]["size"], 3,
        "the server stage received \"hi\\n\""
    );
}

#[test]
fn parallelism_one_serializes_stages() {
    let p = meeting_project();
    let s = Store::new();
    let r = p.build(&s, "out.tar", &["--parallelism", "1"]);
    assert!(
        !r.ok(),
        "with --parallelism 1 the two stages cannot meet, yet the build succeeded:\n{}",
        r.stderr
    );
    let p = meeting_project();
    let s = Store::new();
    let r = run(
        p.build_cmd(&s, "out.tar", &[]).env("KILN_PARALLELISM", "1"),
        BUILD_TIMEOUT,
    );
    assert!(!r.ok(), "KILN_PARALLELISM=1 also serializes:\n{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// Failures

fn failing_project() -> Project {
    Project::new(
        &format!(
            "FROM {}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\nRUN echo boom && exit 3\n",
            from()
        ),
        &[("a.txt", "a\n")],
    )
}

#[test]
fn failing_run_reports_and_caches_nothing_of_it() {
    let p = failing_project();
    let c = Counted::new();
    let (r, n) = c.build(&p, &[]);
    assert!(!r.ok(), "the build fails");
    assert_eq!(n, 2);
    let e = &r.stderr;
    assert!(
        e.contains("RUN echo boom && exit 3"),
        "names the instruction:\n{e}"
    );
    assert!(e.contains("echo boom && exit 3"), "names the command:\n{e}");
    assert!(e.contains("exit code: 3"), "gives the exit code:\n{e}");
    assert!(
        e.lines()
            .any(|l| l.trim_end().ends_with("boom") && !l.contains("echo")),
        "shows the output line:\n{e}"
    );
    assert!(!p.out("out.tar").exists(), "no output from a failed build");

    // The same failing Dockerfile again: the earlier steps are cached, the failing one runs again.
    let (r, n) = c.build(&p, &[]);
    assert!(!r.ok());
    assert_eq!(n, 1, "only the failed step runs again:\n{}", r.stderr);

    p.write(
        "Dockerfile",
        &format!(
            "FROM {}\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy\nRUN echo fixed > /fixed\n",
            from()
        ),
    );
    let (r, n) = c.build(&p, &[]);
    r.assert_ok();
    assert_eq!(
        n, 1,
        "the steps before the failed one are reused:\n{}",
        r.stderr
    );
    let runs = run_steps(&r.stderr);
    assert!(runs[0].1, "RUN cat is CACHED:\n{}", r.stderr);
}

#[test]
fn failing_run_names_the_dockerfile_line() {
    let p = failing_project();
    let s = Store::new();
    let r = p.build(&s, "out.tar", &[]);
    r.assert_failed();
    assert!(
        r.stderr.contains("Dockerfile:4"),
        "the error names Dockerfile:4:\n{}",
        r.stderr
    );
}

#[test]
fn unknown_instruction_names_the_line() {
    let p = Project::new(&format!("FROM {}\nFROBNICATE now\n", from()), &[]);
    let r = p.build(&Store::new(), "out.tar", &[]);
    r.assert_failed();
    assert!(
        r.stderr.contains("line 2") || r.stderr.contains("Dockerfile:2"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.to_lowercase().contains("frobnicate"),
        "{}",
        r.stderr
    );
}

#[test]
fn missing_copy_source_names_the_path() {
    let p = Project::new(&format!("FROM {}\nCOPY not-there.txt /x\n", from()), &[]);
    let r = p.build(&Store::new(), "out.tar", &[]);
    r.assert_failed();
    assert!(r.stderr.contains("not-there.txt"), "{}", r.stderr);
    assert!(r.stderr.contains("not found"), "{}", r.stderr);
}

#[test]
fn missing_base_image_names_the_image() {
    let image = format!("{}/no-such-image:9", registry_host());
    let p = Project::new(&format!("FROM {image}\nRUN true\n"), &[]);
    let r = p.build(&Store::new(), "out.tar", &[]);
    r.assert_failed();
    assert!(r.stderr.contains(&image), "{}", r.stderr);
}

// ---------------------------------------------------------------------------------------------
// Interruption

fn interrupted(sig: i32) {
    let p = Project::new(
        &format!(
            "FROM {}\nCOPY a.txt /a.txt\nRUN echo started-sleeping && sleep 1000\n",
            from()
        ),
        &[("a.txt", "a\n")],
    );
    let s = Store::new();
    let mut child = Running::spawn(&mut p.build_cmd(&s, "out.tar", &[]));
    child.wait_for_stderr(Duration::from_secs(60), |e| {
        e.lines().any(|l| l.ends_with(" started-sleeping"))
    });
    assert!(!s.containers().is_empty(), "the RUN container is running");
    child.signal(sig);
    let r = child.wait(Duration::from_secs(10));
    assert!(!r.ok(), "an interrupted build exits non-zero");
    assert!(
        r.elapsed < Duration::from_secs(60),
        "it took {:?}",
        r.elapsed
    );
    s.assert_no_containers();
    s.assert_no_mounts();
    s.assert_no_temp_files();
    let partial: Vec<_> = std::fs::read_dir(p.out_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(partial.is_empty(), "output files left: {partial:?}");

    p.write(
        "Dockerfile",
        &format!("FROM {}\nCOPY a.txt /a.txt\nRUN echo ok > /ok\n", from()),
    );
    p.build(&s, "out.tar", &[]).assert_ok();
    assert!(p.out("out.tar").exists());
    s.assert_no_containers();
    s.assert_no_mounts();
}

#[test]
fn sigint_stops_the_build_and_leaves_nothing() {
    interrupted(libc::SIGINT);
}

#[test]
fn sigterm_stops_the_build_and_leaves_nothing() {
    interrupted(libc::SIGTERM);
}

// ---------------------------------------------------------------------------------------------
// Two builds on one store

#[test]
fn second_build_on_the_same_store_waits_then_succeeds() {
    let port = free_port();
    let p = Project::new(
        &format!(
            "FROM {}\nRUN echo listening && timeout 60 nc -l -p {port} > /got\n",
            from()
        ),
        &[],
    );
    let c = Counted::new();
    let mut first = Running::spawn(&mut c.cmd(&p, "first.tar", &[]));
    first.wait_for_stderr(Duration::from_secs(60), |e| {
        e.lines().any(|l| l.ends_with(" listening"))
    });
    let mut second = Running::spawn(&mut c.cmd(&p, "second.tar", &[]));
    second.wait_for_stderr(Duration::from_secs(30), |e| {
        e.contains("waiting for another kiln process")
    });
    // Release the first build's RUN.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            use std::io::Write;
            s.write_all(b"hi\n").unwrap();
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let first = first.wait(BUILD_TIMEOUT);
    first.assert_ok();
    let second = second.wait(BUILD_TIMEOUT);
    second.assert_ok();
    assert_eq!(
        c.log.runs(),
        1,
        "the second build waited and then reused the first one's step"
    );
    assert_eq!(
        imgtree(&p.out("first.tar"))["rootfs"],
        imgtree(&p.out("second.tar"))["rootfs"]
    );
}

// ---------------------------------------------------------------------------------------------
// Outputs

/// `type=local` into a directory that already holds files: the result's paths are replaced
/// (a file becomes a directory and back), other files stay, as BuildKit's local exporter does.
#[test]
fn local_export_replaces_result_paths_and_keeps_others() {
    let p = Project::new(
        "FROM scratch\nCOPY a.txt /a.txt\nCOPY sub /sub\n",
        &[("a.txt", "one"), ("sub/b.txt", "bee")],
    );
    let store = Store::new();
    let dest = p.out("local");
    std::fs::create_dir_all(dest.join("a.txt")).unwrap(); // a directory where a file goes
    std::fs::write(dest.join("keep.txt"), "mine").unwrap();
    let out = format!("type=local,dest={}", dest.display());
    run(
        &mut p.build_cmd_output(&store, &out, &[]),
        Duration::from_secs(120),
    )
    .assert_ok();
    assert_eq!(std::fs::read_to_string(dest.join("a.txt")).unwrap(), "one");
    assert_eq!(
        std::fs::read_to_string(dest.join("sub/b.txt")).unwrap(),
        "bee"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("keep.txt")).unwrap(),
        "mine"
    );

    p.write("a.txt", "two");
    run(
        &mut p.build_cmd_output(&store, &out, &[]),
        Duration::from_secs(120),
    )
    .assert_ok();
    assert_eq!(std::fs::read_to_string(dest.join("a.txt")).unwrap(), "two");
    assert_eq!(
        std::fs::read_to_string(dest.join("keep.txt")).unwrap(),
        "mine"
    );
    let leftovers: Vec<_> = std::fs::read_dir(p.out_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".kiln-"))
        .collect();
    assert!(leftovers.is_empty(), "staging left behind: {leftovers:?}");
}

/// Layer compressions other than gzip fail with a clear error instead of being ignored.
#[test]
fn unsupported_compression_is_an_error() {
    let p = Project::new("FROM scratch\nCOPY a.txt /a.txt\n", &[("a.txt", "a")]);
    let store = Store::new();
    let out = format!(
        "type=oci,dest={},compression=zstd",
        p.out("x.tar").display()
    );
    let r = run(
        &mut p.build_cmd_output(&store, &out, &[]),
        Duration::from_secs(120),
    );
    r.assert_failed();
    assert!(
        r.stderr.contains("compression") && r.stderr.contains("zstd"),
        "{}",
        r.stderr
    );
    assert!(!p.out("x.tar").exists());
}

/// A relative --root works for steps that run containers (runc gets absolute paths).
#[test]
fn relative_root_runs_containers() {
    let p = Project::new(&format!("FROM {}\nRUN echo hi > /x\n", from()), &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_kiln"));
    cmd.current_dir(dir.path())
        .args(["--root", "store", "build", "--progress", "plain", "-o"])
        .arg(format!("type=tar,dest={}", p.out("fs.tar").display()))
        .arg(p.ctx());
    run(&mut cmd, Duration::from_secs(120)).assert_ok();
    assert!(p.out("fs.tar").exists());
}
