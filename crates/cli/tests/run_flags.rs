//! RUN --mount, --network and --security end to end, beyond what conformance case 11 pins down:
//! cache mounts outliving builds, secrets never reaching the image or the store, clear errors
//! for what is missing or not granted, and a network namespace of its own for --network=none.

mod common;

use common::*;

fn from() -> String {
    format!("{}/busybox", registry_host())
}

/// Builds into a local directory and returns the file `name` from it.
#[track_caller]
fn built_file(p: &Project, store: &Store, extra: &[&str], name: &str) -> String {
    let dest = p.out_dir().join("rootfs");
    let _ = std::fs::remove_dir_all(&dest);
    let out = format!("type=local,dest={}", dest.display());
    run(&mut p.build_cmd_output(store, &out, extra), BUILD_TIMEOUT).assert_ok();
    std::fs::read_to_string(dest.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn cache_mounts_outlive_builds_and_the_build_cache() {
    let store = Store::new();
    let dockerfile = |n: &str| {
        format!(
            "FROM {}\nRUN --mount=type=cache,target=/cache \
             echo {n} >> /cache/log && cp /cache/log /seen && ls -ld /cache | cut -c1-10 > /mode\n",
            from()
        )
    };
    let p = Project::new(&dockerfile("one"), &[]);
    assert_eq!(built_file(&p, &store, &[], "seen"), "one\n");
    assert_eq!(built_file(&p, &store, &[], "mode"), "drwxr-xr-x\n");
    // A different step sees what the first one left; the cached step does not run again.
    let p2 = Project::new(&dockerfile("two"), &[]);
    assert_eq!(built_file(&p2, &store, &[], "seen"), "one\ntwo\n");
    assert_eq!(
        built_file(&p2, &store, &["--no-cache"], "seen"),
        "one\ntwo\ntwo\n"
    );
    // A mount with another id is another directory; a fresh store has none of it.
    let other = Project::new(
        &format!(
            "FROM {}\nRUN --mount=type=cache,id=elsewhere,target=/cache cat /cache/log > /seen 2>&1 || echo none > /seen\n",
            from()
        ),
        &[],
    );
    assert_eq!(built_file(&other, &store, &[], "seen"), "none\n");
    assert_eq!(built_file(&p, &Store::new(), &[], "seen"), "one\n");
    store.assert_no_mounts();
}

#[test]
fn secrets_stay_out_of_the_image_and_the_store() {
    let store = Store::new();
    let value = "kiln-secret-5a1e7c0de";
    let p = Project::new(
        &format!(
            "FROM {}\n\
             RUN --mount=type=secret,id=tok,uid=1000,mode=0440 \
             stat -c '%u %a' /run/secrets/tok > /file-owner && wc -c < /run/secrets/tok > /file-size\n\
             RUN --mount=type=secret,id=tok,env=TOK echo ${{#TOK}} > /env-size\n",
            from()
        ),
        &[],
    );
    let secret = p.out_dir().join("secret.txt");
    std::fs::write(&secret, value).unwrap();
    let arg = format!("id=tok,src={}", secret.display());
    let dest = p.out_dir().join("rootfs");
    let out = format!("type=local,dest={}", dest.display());
    let r = run(
        &mut p.build_cmd_output(&store, &out, &["--secret", &arg]),
        BUILD_TIMEOUT,
    );
    r.assert_ok();
    let read = |n: &str| std::fs::read_to_string(dest.join(n)).unwrap();
    assert_eq!(read("file-owner"), "1000 440\n");
    assert_eq!(read("file-size").trim(), value.len().to_string());
    assert_eq!(read("env-size").trim(), value.len().to_string());
    assert!(!dest.join("run/secrets").exists(), "no mount stub is left");
    assert!(!r.stderr.contains(value), "the secret is in the output");
    assert_eq!(
        tree_contains(store.root(), value.as_bytes()),
        Vec::<String>::new()
    );
    assert_eq!(tree_contains(&dest, value.as_bytes()), Vec::<String>::new());
    store.assert_no_mounts();

    // Required and not offered: an error that names the secret.
    let p = Project::new(
        &format!(
            "FROM {}\nRUN --mount=type=secret,id=absent,required true\n",
            from()
        ),
        &[],
    );
    let r = p.build(&store, "out.tar", &[]);
    r.assert_failed();
    assert!(
        r.stderr.contains("secret absent: not found"),
        "{}",
        r.stderr
    );
    // A bad --secret flag is refused before anything runs.
    let r = p.build(&store, "out.tar", &["--secret", "id=x,src=/does/not/exist"]);
    r.assert_failed();
    assert!(
        r.stderr.contains("failed to stat /does/not/exist"),
        "{}",
        r.stderr
    );
}

#[test]
fn network_none_has_only_loopback_and_host_needs_an_entitlement() {
    let store = Store::new();
    let p = Project::new(
        &format!(
            "FROM {}\nRUN --network=none cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' > /ifaces\n",
            from()
        ),
        &[],
    );
    assert_eq!(built_file(&p, &store, &[], "ifaces"), "lo\n");

    let host = Project::new(
        &format!(
            "FROM {}\nRUN --network=host cat /proc/net/dev | wc -l > /lines\n",
            from()
        ),
        &[],
    );
    let r = host.build(&store, "out.tar", &[]);
    r.assert_failed();
    assert!(
        r.stderr.contains("network.host is not allowed"),
        "{}",
        r.stderr
    );
    let lines: usize = built_file(&host, &store, &["--allow", "network.host"], "lines")
        .trim()
        .parse()
        .unwrap();
    assert!(lines >= 3, "the host's interfaces are visible");

    let insecure = Project::new(
        &format!("FROM {}\nRUN --security=insecure true\n", from()),
        &[],
    );
    let r = insecure.build(&store, "out.tar", &[]);
    r.assert_failed();
    assert!(
        r.stderr.contains("security.insecure is not allowed"),
        "{}",
        r.stderr
    );
}

#[test]
fn ssh_mounts_are_skipped_when_optional_and_refused_when_required() {
    let store = Store::new();
    let p = Project::new(
        &format!(
            "FROM {}\nRUN --mount=type=ssh echo \"$SSH_AUTH_SOCK\" > /sock\n",
            from()
        ),
        &[],
    );
    assert_eq!(
        built_file(&p, &store, &[], "sock"),
        "/run/buildkit/ssh_agent.0\n"
    );
    let p = Project::new(
        &format!("FROM {}\nRUN --mount=type=ssh,required true\n", from()),
        &[],
    );
    let r = p.build(&store, "out.tar", &[]);
    r.assert_failed();
    assert!(
        r.stderr
            .contains("SSH agent forwarding is not supported yet"),
        "{}",
        r.stderr
    );
}

#[test]
fn bind_mount_of_a_missing_source_fails_clearly() {
    let store = Store::new();
    let p = Project::new(
        &format!(
            "FROM {}\nRUN --mount=type=bind,source=nope,target=/x true\n",
            from()
        ),
        &[("present", "x")],
    );
    let r = p.build(&store, "out.tar", &[]);
    r.assert_failed();
    assert!(
        r.stderr.contains("mount source /nope does not exist"),
        "{}",
        r.stderr
    );
    store.assert_no_mounts();
}
