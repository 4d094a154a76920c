//! ADD from URLs and Git repositories: the source ops and copy actions must be the ones
//! BuildKit's dockerfile2llb writes (convert_copy.go with client/llb's `HTTP` and `Git`).

use kiln_dockerfile::convert::{ConvertOptions, ImageResolver, ResolvedImage, dockerfile_to_llb};
use kiln_proto::Message;
use kiln_proto::pb;

struct NoImages;

impl ImageResolver for NoImages {
    fn resolve(&self, reference: &str, _: &pb::Platform) -> Result<ResolvedImage, String> {
        Err(format!("no images in this test: {reference}"))
    }
}

/// The ops and metadata of `FROM scratch` followed by `instr`.
fn convert(instr: &str) -> Result<(Vec<pb::Op>, pb::Definition), String> {
    let df = format!("FROM scratch\n{instr}\n");
    let def = dockerfile_to_llb(df.as_bytes(), &ConvertOptions::default(), &NoImages)
        .map_err(|e| e.to_string())?
        .definition;
    let ops = def
        .def
        .iter()
        .map(|b| pb::Op::decode(b.as_slice()).unwrap())
        .collect();
    Ok((ops, def))
}

fn sources(ops: &[pb::Op]) -> Vec<&pb::SourceOp> {
    ops.iter()
        .filter_map(|o| match &o.op {
            Some(pb::op::Op::Source(s)) => Some(s),
            _ => None,
        })
        .collect()
}

fn copies(ops: &[pb::Op]) -> Vec<&pb::FileActionCopy> {
    ops.iter()
        .filter_map(|o| match &o.op {
            Some(pb::op::Op::File(f)) => Some(f),
            _ => None,
        })
        .flat_map(|f| f.actions.iter())
        .filter_map(|a| match &a.action {
            Some(pb::file_action::Action::Copy(c)) => Some(c),
            _ => None,
        })
        .collect()
}

struct Case {
    instr: &'static str,
    identifier: &'static str,
    attrs: &'static [(&'static str, &'static str)],
    caps: &'static [&'static str],
    /// The copy's src, dest, mode and whether it unpacks.
    copy: (&'static str, &'static str, i32, bool),
}

const SHA: &str = "sha256:2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881";

const GIT_SECRETS: [(&str, &str); 2] = [
    ("git.authheadersecret", "GIT_AUTH_HEADER"),
    ("git.authtokensecret", "GIT_AUTH_TOKEN"),
];

fn cases() -> Vec<Case> {
    vec![
        Case {
            instr: "ADD https://example.com/a/src.tar /foo/",
            identifier: "https://example.com/a/src.tar",
            attrs: &[("http.filename", "src.tar")],
            caps: &["source.http"],
            copy: ("/src.tar", "/foo/", -1, false),
        },
        Case {
            instr: "ADD --unpack=true http://example.com/x/f.tar.gz?v=1 /x/",
            identifier: "http://example.com/x/f.tar.gz?v=1",
            attrs: &[("http.filename", "f.tar.gz")],
            caps: &["source.http"],
            copy: ("/f.tar.gz", "/x/", -1, true),
        },
        Case {
            instr: "ADD --chmod=0755 https://example.com/ rel",
            identifier: "https://example.com/",
            attrs: &[("http.filename", "__unnamed__")],
            caps: &["source.http"],
            copy: ("/__unnamed__", "/rel", 0o755, false),
        },
        Case {
            // A trailing slash after .git is not a repository.
            instr: "ADD https://example.com/r.git/ /d",
            identifier: "https://example.com/r.git/",
            attrs: &[("http.filename", "r.git")],
            caps: &["source.http"],
            copy: ("/r.git", "/d", -1, false),
        },
        Case {
            instr: "ADD https://github.com/moby/buildkit.git#v0.10.1:docs/./x /d",
            identifier: "git://github.com/moby/buildkit.git#v0.10.1:docs/x",
            attrs: &[("git.fullurl", "https://github.com/moby/buildkit.git")],
            caps: &["source.git", "source.git.fullurl"],
            copy: ("/", "/d", -1, false),
        },
        Case {
            instr: "ADD --keep-git-dir --chown=1:2 git://host:9418/srv/r.git /d/",
            identifier: "git://host:9418/srv/r.git",
            attrs: &[
                ("git.fullurl", "git://host:9418/srv/r.git"),
                ("git.keepgitdir", "true"),
            ],
            caps: &["source.git", "source.git.fullurl", "source.git.keepgitdir"],
            copy: ("/", "/d/", -1, false),
        },
        Case {
            instr: "ADD https://example.com/r.git?tag=v1&subdir=sub&keep-git-dir&submodules=false /d",
            identifier: "git://example.com/r.git#refs/tags/v1:sub",
            attrs: &[
                ("git.fullurl", "https://example.com/r.git"),
                ("git.keepgitdir", "true"),
                ("git.skipsubmodules", "true"),
            ],
            caps: &[
                "source.git",
                "source.git.fullurl",
                "source.git.keepgitdir",
                "source.git.skipsubmodules",
            ],
            copy: ("/", "/d", -1, false),
        },
        Case {
            instr: "ADD --checksum=0123abcd https://example.com/r.git#main /d",
            identifier: "git://example.com/r.git#main",
            attrs: &[
                ("git.checksum", "0123abcd"),
                ("git.fullurl", "https://example.com/r.git"),
            ],
            caps: &["source.git", "source.git.checksum", "source.git.fullurl"],
            copy: ("/", "/d", -1, false),
        },
    ]
}

#[test]
fn remote_sources_lower_as_buildkit() {
    for case in cases() {
        let (ops, def) = convert(case.instr).unwrap_or_else(|e| panic!("{}: {e}", case.instr));
        let srcs = sources(&ops);
        assert_eq!(srcs.len(), 1, "{}: {srcs:?}", case.instr);
        let s = srcs[0];
        assert_eq!(s.identifier, case.identifier, "{}", case.instr);
        let mut want: Vec<(&str, &str)> = case.attrs.to_vec();
        if s.identifier.starts_with("git://") {
            want.extend(GIT_SECRETS);
        }
        want.sort();
        let got: Vec<(&str, &str)> = s
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(got, want, "{}", case.instr);
        // Sources have no platform (client/llb's platformSpecificSource).
        let op = ops
            .iter()
            .find(|o| matches!(o.op, Some(pb::op::Op::Source(_))))
            .unwrap();
        assert!(op.platform.is_none(), "{}", case.instr);
        let md = &def.metadata[&kiln_llb::op_digest(op)];
        let mut caps: Vec<&str> = md.caps.keys().map(String::as_str).collect();
        caps.sort();
        assert_eq!(caps, case.caps, "{}", case.instr);
        let name = &md.description["llb.customname"];
        assert!(name.ends_with(case.instr), "{}: {name}", case.instr);
        if s.identifier.starts_with("http") {
            assert_eq!(md.description["com.docker.dockerfile.v1.command"], "");
        }

        let c = copies(&ops);
        assert_eq!(c.len(), 1, "{}", case.instr);
        let c = c[0];
        let (src, dest, mode, unpack) = case.copy;
        assert_eq!(
            (
                c.src.as_str(),
                c.dest.as_str(),
                c.mode,
                c.attempt_unpack_docker_compatibility
            ),
            (src, dest, mode, unpack),
            "{}",
            case.instr
        );
        // llb.Copy with only CopyInfo{Mode, CreateDestPath, AttemptUnpack}.
        assert!(c.create_dest_path, "{}", case.instr);
        assert!(
            !c.follow_symlink && !c.dir_copy_contents && !c.allow_wildcard,
            "{}",
            case.instr
        );
        assert!(
            !c.allow_empty_wildcard && c.timestamp == -1,
            "{}",
            case.instr
        );
        if case.instr.contains("--chown=1:2") {
            let owner = c.owner.as_ref().expect("owner");
            assert_eq!(
                owner.user.as_ref().unwrap().user,
                Some(pb::user_opt::User::ById(1))
            );
        }
    }
}

#[test]
fn checksum_of_a_url() {
    let (ops, _) = convert(&format!("ADD --checksum={SHA} https://example.com/f /x")).unwrap();
    assert_eq!(sources(&ops)[0].attrs["http.checksum"], SHA);
}

#[test]
fn link_copies_onto_scratch_and_merges() {
    let (ops, _) = convert("ADD --link https://example.com/f /x").unwrap();
    // On scratch the merge is the copy itself: one file op whose copy reads the HTTP source.
    assert_eq!(copies(&ops).len(), 1);
    assert_eq!(sources(&ops)[0].identifier, "https://example.com/f");
}

#[test]
fn errors_as_buildkit() {
    for (instr, want) in [
        (
            "COPY https://example.com/f /x",
            "source can't be a URL for COPY",
        ),
        (
            "COPY https://example.com/r.git /x",
            "source can't be a git ref for COPY",
        ),
        (
            "ADD --checksum=sha256:abc https://example.com/f /x",
            "invalid checksum digest length",
        ),
        (
            "ADD --checksum=md5:abc https://example.com/f /x",
            "unsupported digest algorithm",
        ),
        (
            "ADD --checksum=sha256:abc a b /x",
            "checksum can't be specified for multiple sources",
        ),
        (
            "ADD --checksum=sha256:abc a /x",
            "checksum requires HTTP(S) or Git sources",
        ),
        (
            "ADD --keep-git-dir=false https://h/r.git?keep-git-dir=true /d",
            "inconsistent keep-git-dir configuration",
        ),
        (
            "ADD --checksum=ab https://h/r.git?commit=cd /d",
            "checksum mismatch",
        ),
        (
            "ADD https://h/r.git?tag=a&branch=b /d",
            "branch conflicts with tag",
        ),
        ("ADD https://h/r.git?bogus=1 /d", "unexpected query"),
        (
            "ADD git@github.com:moby/buildkit.git /d",
            "ssh Git sources are not supported yet",
        ),
    ] {
        let err = convert(instr)
            .err()
            .unwrap_or_else(|| panic!("{instr}: converted"));
        assert!(err.contains(want), "{instr}: {err}");
    }
}

#[test]
fn local_sources_are_unchanged() {
    // file:// is no Git protocol for BuildKit: a path in the context, unpacked as ADD does.
    let (ops, _) = convert("ADD file:///x.tar /d/").unwrap();
    let s = sources(&ops);
    assert!(s[0].identifier.starts_with("local://"), "{s:?}");
    let c = copies(&ops)[0];
    assert!(c.attempt_unpack_docker_compatibility && c.allow_wildcard);
}
