//! run_file_op wiring and the corners of each action.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use kiln_fileop::{FileOpBackend, FileOpError, run_file_op};
use kiln_proto::pb::{
    ChownOpt, FileAction, FileActionCopy, FileActionMkDir, FileActionMkFile, FileActionRm,
    FileActionSymlink, FileOp, UserOpt, file_action::Action, user_opt::User,
};

/// Inputs are plain directories; writable roots are fresh copies made with
/// `cp -a`, so the inputs themselves are never modified.
#[derive(Debug)]
struct Dirs {
    inputs: Vec<Option<PathBuf>>,
    keep: Vec<tempfile::TempDir>,
    writables: usize,
}

impl Dirs {
    fn new(inputs: Vec<Option<PathBuf>>) -> Self {
        Dirs {
            inputs,
            keep: Vec::new(),
            writables: 0,
        }
    }
}

impl FileOpBackend for Dirs {
    fn input_root(&self, index: usize) -> Result<Option<PathBuf>, FileOpError> {
        Ok(self.inputs[index].clone())
    }

    fn writable(&mut self, base: Option<usize>) -> Result<PathBuf, FileOpError> {
        self.writables += 1;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().to_path_buf();
        if let Some(src) = base.and_then(|i| self.inputs[i].clone()) {
            let st = std::process::Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", src.display()))
                .arg(&p)
                .status()
                .unwrap();
            assert!(st.success());
        }
        self.keep.push(t);
        Ok(p)
    }
}

fn action(input: i64, secondary: i64, output: i64, a: Action) -> FileAction {
    FileAction {
        input,
        secondary_input: secondary,
        output,
        action: Some(a),
    }
}

fn mkdir(path: &str, mode: i32, parents: bool) -> Action {
    Action::Mkdir(FileActionMkDir {
        path: path.into(),
        mode,
        make_parents: parents,
        owner: None,
        timestamp: -1,
    })
}

fn mkfile(path: &str, data: &str, mode: i32) -> Action {
    Action::Mkfile(FileActionMkFile {
        path: path.into(),
        mode,
        data: data.into(),
        owner: None,
        timestamp: -1,
    })
}

/// The flags the Dockerfile frontend sets for a plain COPY.
fn cp(src: &str, dest: &str) -> FileActionCopy {
    FileActionCopy {
        src: src.into(),
        dest: dest.into(),
        mode: -1,
        follow_symlink: true,
        dir_copy_contents: true,
        create_dest_path: true,
        allow_wildcard: true,
        allow_empty_wildcard: true,
        timestamp: -1,
        ..FileActionCopy::default()
    }
}

fn run(
    inputs: Vec<Option<PathBuf>>,
    actions: Vec<FileAction>,
) -> (Dirs, Result<Vec<(i64, PathBuf)>, FileOpError>) {
    let n = inputs.len();
    let mut d = Dirs::new(inputs);
    let r = run_file_op(&FileOp { actions }, n, &mut d);
    (d, r)
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

fn root_of(err: &FileOpError) -> &FileOpError {
    match err {
        FileOpError::Action { source, .. } => root_of(source),
        e => e,
    }
}

#[test]
fn chained_actions_modify_one_root_in_place() {
    let (d, r) = run(
        vec![None],
        vec![
            action(0, -1, -1, mkdir("/a/b", 0o750, true)),
            action(1, -1, -1, mkfile("/a/b/f", "hi", 0o600)),
            action(
                2,
                -1,
                0,
                Action::Symlink(FileActionSymlink {
                    oldpath: "b/f".into(),
                    newpath: "/a/l".into(),
                    owner: None,
                    timestamp: 1_000_000_000_123,
                }),
            ),
        ],
    );
    let out = r.unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(d.writables, 1, "intermediate results are reused in place");
    let root = &out[0].1;
    assert_eq!(mode(&root.join("a/b")), 0o750);
    assert_eq!(mode(&root.join("a/b/f")), 0o600);
    assert_eq!(fs::read_to_string(root.join("a/l")).unwrap(), "hi");
    let m = fs::symlink_metadata(root.join("a/l")).unwrap();
    assert_eq!((m.mtime(), m.mtime_nsec()), (1000, 123));
}

#[test]
fn a_shared_result_is_copied_not_clobbered() {
    let (_d, r) = run(
        vec![None],
        vec![
            action(0, -1, 0, mkfile("/base", "b", 0o644)),
            action(1, -1, 1, mkfile("/one", "1", 0o644)),
            action(1, -1, 2, mkfile("/two", "2", 0o644)),
        ],
    );
    let out = r.unwrap();
    let names = |p: &Path| {
        let mut v: Vec<String> = fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&out[0].1), ["base"]);
    assert_eq!(names(&out[1].1), ["base", "one"]);
    assert_eq!(names(&out[2].1), ["base", "two"]);
}

#[test]
fn invalid_ops_are_rejected() {
    let bad = |actions| run(vec![None], actions).1.unwrap_err().to_string();
    assert!(bad(vec![action(0, -1, -1, mkdir("/a", 0o755, false))]).contains("no outputs"));
    assert!(bad(vec![action(5, -1, 0, mkdir("/a", 0o755, false))]).contains("invalid input index"));
    assert!(bad(vec![action(1, -1, 0, mkdir("/a", 0o755, false))]).contains("loop"));
    assert!(
        bad(vec![action(0, -1, 1, mkdir("/a", 0o755, false))]).contains("missing output index 0")
    );
}

#[test]
fn mkdir_and_mkfile_leave_existing_entries_alone() {
    let base = tempfile::tempdir().unwrap();
    fs::create_dir(base.path().join("d")).unwrap();
    fs::set_permissions(base.path().join("d"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(base.path().join("f"), "old").unwrap();
    fs::set_permissions(base.path().join("f"), fs::Permissions::from_mode(0o640)).unwrap();
    let (_d, r) = run(
        vec![Some(base.path().into())],
        vec![
            action(0, -1, -1, mkdir("/d", 0o755, false)),
            action(1, -1, -1, mkdir("/d", 0o755, true)),
            action(2, -1, 0, mkfile("/f", "new", 0o777)),
        ],
    );
    let root = r.unwrap().remove(0).1;
    assert_eq!(mode(&root.join("d")), 0o700);
    assert_eq!(mode(&root.join("f")), 0o640);
    assert_eq!(fs::read_to_string(root.join("f")).unwrap(), "new");
    // make_parents over a file fails; without parents a missing parent fails.
    let (_d, r) = run(
        vec![Some(base.path().into())],
        vec![action(0, -1, 0, mkdir("/f/x", 0o755, true))],
    );
    assert!(r.is_err());
    let (_d, r) = run(
        vec![None],
        vec![action(0, -1, 0, mkdir("/no/x", 0o755, false))],
    );
    assert!(r.unwrap_err().is_not_found());
}

#[test]
fn paths_never_escape_the_root() {
    let base = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    symlink(outside.path(), base.path().join("escape")).unwrap();
    symlink("../../../../../..", base.path().join("up")).unwrap();
    // The absolute target is re-rooted, where it does not exist.
    let (_d, r) = run(
        vec![Some(base.path().into())],
        vec![action(0, -1, 0, mkfile("/escape/f", "x", 0o644))],
    );
    assert!(r.unwrap_err().is_not_found());
    let (_d, r) = run(
        vec![Some(base.path().into())],
        vec![
            action(0, -1, -1, mkdir("/escape/made", 0o755, true)),
            action(1, -1, -1, mkdir("/up/made", 0o755, true)),
            action(2, -1, 0, mkfile("/../../g", "y", 0o644)),
        ],
    );
    let root = r.unwrap().remove(0).1;
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
    assert!(
        root.join(outside.path().strip_prefix("/").unwrap())
            .join("made")
            .is_dir()
    );
    assert!(root.join("made").is_dir());
    assert!(root.join("g").is_file());
}

#[test]
fn rm_semantics() {
    let base = tempfile::tempdir().unwrap();
    for f in ["a.log", "b.log", "keep.txt"] {
        fs::write(base.path().join(f), "x").unwrap();
    }
    fs::create_dir_all(base.path().join("dir/sub")).unwrap();
    symlink("/keep.txt", base.path().join("link")).unwrap();
    let rm = |p: &str, nf: bool, w: bool| {
        Action::Rm(FileActionRm {
            path: p.into(),
            allow_not_found: nf,
            allow_wildcard: w,
        })
    };
    let (_d, r) = run(
        vec![Some(base.path().into())],
        vec![
            action(0, -1, -1, rm("/*.log", false, true)),
            action(1, -1, -1, rm("/dir", false, false)),
            action(2, -1, -1, rm("/link", false, false)),
            action(3, -1, -1, rm("/missing", true, false)),
            action(4, -1, 0, rm("/none*", false, true)),
        ],
    );
    let root = r.unwrap().remove(0).1;
    assert!(!root.join("a.log").exists() && !root.join("b.log").exists());
    assert!(!root.join("dir").exists());
    assert!(fs::symlink_metadata(root.join("link")).is_err());
    assert!(
        root.join("keep.txt").exists(),
        "the link was removed, not its target"
    );
    let (_d, r) = run(
        vec![None],
        vec![action(0, -1, 0, rm("/missing", false, false))],
    );
    let e = r.unwrap_err();
    assert_eq!(root_of(&e).to_string(), "\"/missing\": not found");
}

fn ctx() -> tempfile::TempDir {
    let t = tempfile::tempdir().unwrap();
    let r = t.path();
    fs::create_dir_all(r.join("dir/sub")).unwrap();
    fs::write(r.join("dir/a.txt"), "a").unwrap();
    fs::write(r.join("dir/sub/b.txt"), "b").unwrap();
    fs::write(r.join("file"), "f").unwrap();
    fs::hard_link(r.join("dir/a.txt"), r.join("dir/hard.txt")).unwrap();
    fs::set_permissions(r.join("dir"), fs::Permissions::from_mode(0o750)).unwrap();
    t
}

/// Runs one copy from `ctx` onto `base`; the Dirs keep the roots alive.
fn copy_run(
    c: FileActionCopy,
    base: Option<PathBuf>,
    ctx: &Path,
) -> Result<(Dirs, PathBuf), FileOpError> {
    let (d, r) = run(
        vec![base, Some(ctx.into())],
        vec![action(0, 1, 0, Action::Copy(c))],
    );
    let root = r?.remove(0).1;
    Ok((d, root))
}

#[test]
fn copy_missing_source_says_not_found() {
    let c = ctx();
    let e = copy_run(cp("/missing", "/x"), None, c.path()).unwrap_err();
    assert_eq!(root_of(&e).to_string(), "\"/missing\": not found");
    let mut strict = cp("/nothing*", "/x/");
    strict.allow_empty_wildcard = false;
    assert!(copy_run(strict, None, c.path()).unwrap_err().is_not_found());
    assert!(copy_run(cp("/nothing*", "/x/"), None, c.path()).is_ok());
}

#[test]
fn copy_dir_rules_hardlinks_and_fixed_time() {
    let c = ctx();
    let mut a = cp("/dir", "/out");
    a.timestamp = 42_000_000_000;
    let (_d, root) = copy_run(a, None, c.path()).unwrap();
    // fsutil creates a missing dest with 0755 before copying the contents.
    assert_eq!(mode(&root.join("out")), 0o755);
    assert_eq!(mode(&root.join("out/sub")), 0o755);
    assert!(root.join("out/sub/b.txt").exists());
    let i1 = fs::metadata(root.join("out/a.txt")).unwrap().ino();
    assert_eq!(i1, fs::metadata(root.join("out/hard.txt")).unwrap().ino());
    for p in ["out", "out/a.txt", "out/sub"] {
        assert_eq!(
            fs::symlink_metadata(root.join(p)).unwrap().mtime(),
            42,
            "{p}"
        );
    }
    // Without dir_copy_contents an existing dest receives the dir itself.
    let base = tempfile::tempdir().unwrap();
    fs::create_dir(base.path().join("out")).unwrap();
    let mut a = cp("/dir", "/out");
    a.dir_copy_contents = false;
    let (_d, root) = copy_run(a, Some(base.path().into()), c.path()).unwrap();
    assert!(root.join("out/dir/a.txt").exists());
}

#[test]
fn copy_replacing_and_conflicts() {
    let c = ctx();
    let base = tempfile::tempdir().unwrap();
    fs::create_dir_all(base.path().join("t/file")).unwrap();
    // A file may not replace a directory...
    let e = copy_run(cp("/file", "/t/"), Some(base.path().into()), c.path()).unwrap_err();
    assert!(
        matches!(root_of(&e), FileOpError::ReplaceDirWithFile { .. }),
        "{e:?}"
    );
    // ...unless always_replace_existing_dest_paths is set (COPY --link style).
    let mut a = cp("/file", "/t/");
    a.always_replace_existing_dest_paths = true;
    let (_d, root) = copy_run(a, Some(base.path().into()), c.path()).unwrap();
    assert!(root.join("t/file").is_file());
    // A directory source onto a file is an error.
    fs::write(base.path().join("plain"), "x").unwrap();
    let e = copy_run(cp("/dir", "/plain"), Some(base.path().into()), c.path()).unwrap_err();
    assert!(
        matches!(root_of(&e), FileOpError::NotADirectory { .. }),
        "{e:?}"
    );
    // create_dest_path=false needs the parent.
    let mut a = cp("/file", "/no/such/dest");
    a.create_dest_path = false;
    assert!(copy_run(a, None, c.path()).is_err());
}

#[test]
fn copy_owner_mode_str_and_patterns() {
    let c = ctx();
    let mut a = cp("/dir", "/o/");
    a.owner = Some(ChownOpt {
        user: Some(UserOpt {
            user: Some(User::ById(7)),
        }),
        group: None,
    });
    a.mode_str = "go-rwx,u+s".into();
    a.exclude_patterns = vec!["sub".into()];
    let (_d, root) = copy_run(a, None, c.path()).unwrap();
    let m = fs::metadata(root.join("o/a.txt")).unwrap();
    assert_eq!((m.uid(), m.gid()), (7, 7));
    assert_eq!(m.mode() & 0o7777, 0o4600);
    assert!(!root.join("o/sub").exists());
    let m = fs::metadata(root.join("o")).unwrap();
    assert_eq!(
        (m.uid(), m.gid()),
        (7, 7),
        "created dest dir gets the owner"
    );
    let mut a = cp("/", "/p/");
    a.include_patterns = vec!["dir/sub/*.txt".into()];
    let (_d, root) = copy_run(a, None, c.path()).unwrap();
    assert!(root.join("p/dir/sub/b.txt").exists());
    assert!(!root.join("p/dir/a.txt").exists() && !root.join("p/file").exists());
    assert_eq!(
        mode(&root.join("p/dir")),
        0o750,
        "lazy parents keep their mode"
    );
}

#[test]
fn copy_keeps_xattrs() {
    let c = ctx();
    if xattr::set(c.path().join("file"), "user.kiln", b"v").is_err() {
        eprintln!("skipped: no user xattrs on this file system");
        return;
    }
    let (_d, root) = copy_run(cp("/file", "/x"), None, c.path()).unwrap();
    assert_eq!(
        xattr::get(root.join("x"), "user.kiln").unwrap().as_deref(),
        Some(&b"v"[..])
    );
}
