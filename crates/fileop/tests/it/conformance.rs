//! BuildKit's results for the public conformance cases, replayed: the file ops
//! of each case's llb.pb run on a tiny base and the case's context, and the
//! files must equal expected.json under the paths those ops touch. RUN steps
//! are not executed; where a later op depends on one, a hook stands in.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use kiln_fileop::{CopyOptions, FileOpBackend, FileOpError, copy, run_file_op};
use kiln_proto::pb::{self, op::Op};
use prost::Message;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const CASES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../conformance/kiln-cases");

type Hook = fn(usize, &Path);

struct Dirs {
    keep: Vec<TempDir>,
}

impl Dirs {
    fn fresh(&mut self) -> PathBuf {
        let t = tempfile::tempdir().unwrap();
        fs::set_permissions(t.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let p = t.path().to_path_buf();
        self.keep.push(t);
        p
    }

    /// A writable copy of `src` (everything kept).
    fn clone_of(&mut self, src: &Path) -> PathBuf {
        let dst = self.fresh();
        merge_into(src, &dst);
        dst
    }
}

fn merge_into(src: &Path, dst: &Path) {
    let opts = CopyOptions {
        copy_dir_contents: true,
        ..CopyOptions::default()
    };
    copy(src, "/", dst, "/", &opts).unwrap();
}

struct Backend<'a> {
    inputs: Vec<Option<PathBuf>>,
    dirs: &'a mut Dirs,
}

impl FileOpBackend for Backend<'_> {
    fn input_root(&self, index: usize) -> Result<Option<PathBuf>, FileOpError> {
        Ok(self.inputs[index].clone())
    }

    fn writable(&mut self, base: Option<usize>) -> Result<PathBuf, FileOpError> {
        Ok(match base.and_then(|i| self.inputs[i].clone()) {
            Some(p) => self.dirs.clone_of(&p),
            None => self.dirs.fresh(),
        })
    }
}

/// The base image's files that matter to COPY: its user databases.
fn base_image(dirs: &mut Dirs) -> PathBuf {
    let root = dirs.fresh();
    fs::create_dir(root.join("etc")).unwrap();
    fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n",
    )
    .unwrap();
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
    for p in ["etc", "etc/passwd", "etc/group"] {
        let mode = if p == "etc" { 0o755 } else { 0o644 };
        fs::set_permissions(root.join(p), fs::Permissions::from_mode(mode)).unwrap();
    }
    root
}

/// The case's context as a client would send it: modes normalised the way
/// the README asks (checkouts may be read-only), owners 0:0, links kept.
fn context(case: &Path, dirs: &mut Dirs) -> PathBuf {
    let dst = dirs.clone_of(&case.join("ctx"));
    fn fix(p: &Path) {
        for e in fs::read_dir(p).unwrap() {
            let e = e.unwrap();
            let m = fs::symlink_metadata(e.path()).unwrap();
            if m.file_type().is_symlink() {
                continue;
            }
            let mode = if m.is_dir() || m.mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            fs::set_permissions(e.path(), fs::Permissions::from_mode(mode)).unwrap();
            if m.is_dir() {
                fix(&e.path());
            }
        }
    }
    fix(&dst);
    dst
}

fn digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// Interprets the case's LLB: sources, file ops, merges; exec ops run the hook.
fn build(case_name: &str, hook: Hook) -> (PathBuf, Dirs) {
    let case = Path::new(CASES).join(case_name);
    let def = pb::Definition::decode(fs::read(case.join("llb.pb")).unwrap().as_slice()).unwrap();
    let mut dirs = Dirs { keep: Vec::new() };
    let mut results: HashMap<String, Option<PathBuf>> = HashMap::new();
    let mut last = None;
    let mut execs = 0;
    for bytes in &def.def {
        let op = pb::Op::decode(bytes.as_slice()).unwrap();
        let inputs: Vec<Option<PathBuf>> = op
            .inputs
            .iter()
            .map(|i| results[&i.digest].clone())
            .collect();
        let out = match &op.op {
            Some(Op::Source(s)) if s.identifier.starts_with("docker-image://") => {
                Some(base_image(&mut dirs))
            }
            Some(Op::Source(s)) if s.identifier.starts_with("local://") => {
                Some(context(&case, &mut dirs))
            }
            Some(Op::Exec(_)) => {
                let root = dirs.clone_of(inputs[0].as_ref().unwrap());
                hook(execs, &root);
                execs += 1;
                Some(root)
            }
            Some(Op::Merge(m)) => {
                let root = dirs.fresh();
                for i in &m.inputs {
                    if let Some(p) = &inputs[i.input as usize] {
                        merge_into(p, &root);
                    }
                }
                Some(root)
            }
            Some(Op::File(f)) => {
                let mut b = Backend {
                    inputs: inputs.clone(),
                    dirs: &mut dirs,
                };
                let outs = run_file_op(f, inputs.len(), &mut b).unwrap_or_else(|e| {
                    panic!("{case_name}: {e}: {:?}", std::error::Error::source(&e))
                });
                Some(outs[0].1.clone())
            }
            None => {
                last = inputs[0].clone();
                None
            }
            Some(other) => panic!("unexpected op {other:?}"),
        };
        results.insert(digest(bytes), out);
    }
    (last.expect("terminal op"), dirs)
}

/// Our view of one path, in expected.json's shape.
fn describe(root: &Path, rel: &str) -> Value {
    let p = root.join(rel);
    let m = fs::symlink_metadata(&p).unwrap();
    let mut v = serde_json::json!({
        "mode": format!("0o{:o}", m.mode() & 0o7777),
        "uid": m.uid(),
        "gid": m.gid(),
    });
    let o = v.as_object_mut().unwrap();
    if m.is_dir() {
        o.insert("type".into(), "dir".into());
    } else if m.file_type().is_symlink() {
        o.insert("type".into(), "symlink".into());
        let t = fs::read_link(&p).unwrap();
        o.insert("target".into(), t.to_string_lossy().into_owned().into());
    } else {
        o.insert("type".into(), "file".into());
        let mut data = Vec::new();
        fs::File::open(&p).unwrap().read_to_end(&mut data).unwrap();
        o.insert("size".into(), data.len().into());
        let h = hex::encode(Sha256::digest(&data));
        o.insert("sha256".into(), h[..16].to_string().into());
    }
    v
}

fn walk(root: &Path, rel: &str, out: &mut Vec<String>) {
    let dir = if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(rel)
    };
    for e in fs::read_dir(dir).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        let r = if rel.is_empty() {
            name
        } else {
            format!("{rel}/{name}")
        };
        out.push(r.clone());
        if fs::symlink_metadata(root.join(&r)).unwrap().is_dir() {
            walk(root, &r, out);
        }
    }
}

/// Compares every path `select`ed on either side; returns the differences.
fn compare(case_name: &str, root: &Path, select: &dyn Fn(&str) -> bool) -> Vec<String> {
    let exp: Value = serde_json::from_str(
        &fs::read_to_string(Path::new(CASES).join(case_name).join("expected.json")).unwrap(),
    )
    .unwrap();
    let want: BTreeMap<&str, &Value> = exp["rootfs"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| select(k))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    let mut ours = Vec::new();
    walk(root, "", &mut ours);
    let ours: Vec<String> = ours.into_iter().filter(|p| select(p)).collect();
    let mut diffs = Vec::new();
    for p in &ours {
        if !want.contains_key(p.as_str()) {
            diffs.push(format!("extra {p}"));
        }
    }
    assert!(
        !want.is_empty(),
        "selection matches nothing in expected.json"
    );
    for (p, w) in &want {
        if !ours.iter().any(|o| o == p) {
            diffs.push(format!("missing {p}"));
            continue;
        }
        let got = describe(root, p);
        if &&got != w {
            diffs.push(format!("differs {p}: want {w} got {got}"));
        }
    }
    diffs
}

fn check(case_name: &str, hook: Hook, select: &dyn Fn(&str) -> bool) {
    let (root, _dirs) = build(case_name, hook);
    let diffs = compare(case_name, &root, select);
    assert!(diffs.is_empty(), "{case_name}:\n{}", diffs.join("\n"));
}

fn no_hook(_: usize, _: &Path) {}

#[test]
fn case_01_single_stage_app() {
    fn hook(i: usize, root: &Path) {
        if i == 0 {
            // RUN chmod 0755 bin/greet.sh && mkdir -p var/log ...
            let g = root.join("opt/greeter/bin/greet.sh");
            fs::set_permissions(g, fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    let made_by_run = [
        "banner.txt",
        "count.txt",
        "listing.txt",
        "combined.txt",
        "var",
    ];
    check("01-single-stage-app", hook, &|p: &str| {
        p.starts_with("opt") && !made_by_run.iter().any(|m| p.contains(m))
    });
}

#[test]
fn case_04_copy_corners() {
    check("04-copy-corners", no_hook, &|p: &str| {
        p.starts_with("dst") || p.starts_with("etc")
    });
}

#[test]
fn case_09_workdir_user_ownership() {
    fn hook(i: usize, root: &Path) {
        if i == 0 {
            let add = |f: &str, s: &str| {
                let p = root.join(f);
                let mut c = fs::read_to_string(&p).unwrap();
                c.push_str(s);
                fs::write(p, c).unwrap();
            };
            add(
                "etc/passwd",
                "app:x:1000:1000:app user:/home/app:/bin/sh\nsvc:x:2000:3000::/nonexistent:/bin/false\n",
            );
            add(
                "etc/group",
                "app:x:1000:\nsvcgrp:x:3000:\nextra:x:4444:app,svc\n",
            );
            fs::create_dir_all(root.join("home/app")).unwrap();
            std::os::unix::fs::chown(root.join("home/app"), Some(1000), Some(1000)).unwrap();
        }
    }
    let dirs = [
        "srv",
        "srv/root-made",
        "srv/root-made/sub",
        "srv/app-made",
        "srv/app-made/nested",
        "srv/numeric",
        "srv/svc-app",
        "srv/svc-only",
        "srv/copied-chown-app.txt",
        "srv/copied-under-user.txt",
        "home/app",
    ];
    check("09-workdir-user", hook, &|p: &str| dirs.contains(&p));
}

#[test]
fn case_14_copy_link_parents_exclude() {
    fn hook(i: usize, root: &Path) {
        if i == 0 {
            // RUN mkdir -p /srv/existing && echo "present before" > /srv/existing/file.txt
            fs::create_dir_all(root.join("srv/existing")).unwrap();
            fs::write(root.join("srv/existing/file.txt"), "present before\n").unwrap();
        }
    }
    check("14-copy-link-parents", hook, &|p: &str| {
        p.starts_with("srv") && p != "srv/after-link.txt"
    });
}

#[test]
fn case_02_copy_from_stages_and_scratch() {
    fn hook(i: usize, root: &Path) {
        let w = |p: &str, s: &str| {
            let p = root.join(p);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, s).unwrap();
        };
        match i {
            0 => w("out/base.txt", "made in stage base\n"),
            1 => {
                let a = fs::read_to_string(root.join("work/part1.txt")).unwrap();
                let b = fs::read_to_string(root.join("work/part2.txt")).unwrap();
                let joined = format!("{a}{b}");
                w("out/joined.size", &format!("{}\n", joined.len()));
                w("out/joined.txt", &joined);
            }
            _ => {}
        }
    }
    check("02-multistage-target", hook, &|p: &str| {
        p.starts_with("app") && p != "app/manifest.txt"
    });
}

#[test]
fn case_10_add_tarballs() {
    fn hook(i: usize, root: &Path) {
        if i == 0 {
            // RUN mkdir -p /opt/merge/pkg/etc && echo existing > .../existing.conf
            //     && echo old > /opt/merge/TOP.txt
            let etc = root.join("opt/merge/pkg/etc");
            fs::create_dir_all(&etc).unwrap();
            for d in ["opt/merge", "opt/merge/pkg", "opt/merge/pkg/etc"] {
                fs::set_permissions(root.join(d), fs::Permissions::from_mode(0o755)).unwrap();
            }
            fs::write(etc.join("existing.conf"), "existing\n").unwrap();
            fs::write(root.join("opt/merge/TOP.txt"), "old\n").unwrap();
            for f in ["opt/merge/pkg/etc/existing.conf", "opt/merge/TOP.txt"] {
                fs::set_permissions(root.join(f), fs::Permissions::from_mode(0o644)).unwrap();
            }
        }
    }
    check("10-add-tarballs", hook, &|p: &str| p.starts_with("opt"));
}
