//! The conformance cases in conformance/kiln-cases: our LLB must equal the `llb.pb` BuildKit's
//! dockerfile2llb wrote (op for op, digests included), and our image config and history must
//! equal `expected.json`.

mod common;

use common::*;
use kiln_dockerfile::convert::{ConvertOptions, dockerfile_to_llb};
use kiln_proto::Message;
use kiln_proto::pb;
use std::collections::BTreeMap;
use std::path::PathBuf;

fn case_dir(prefix: &str) -> PathBuf {
    let root = manifest_dir().join("../../conformance/kiln-cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(prefix))
        })
        .collect();
    dirs.sort();
    dirs.pop().unwrap_or_else(|| panic!("no case {prefix}"))
}

/// LLB: as dockerfile2llb made llb.pb, without build args or .dockerignore.
fn check_llb(prefix: &str) {
    check_llb_of(&case_dir(prefix), prefix);
}

/// The source map of a real build (a file name given): the ops of llb.pb, each from an
/// instruction placed on that instruction's lines, internal ops on none.
fn check_source_map(prefix: &str) {
    let dir = case_dir(prefix);
    let want_def =
        pb::Definition::decode(std::fs::read(dir.join("llb.pb")).unwrap().as_slice()).unwrap();
    let want = decode_ops(&want_def);
    let (target, _) = case_args(&dir);
    let opts = ConvertOptions {
        target,
        local_unique: local_unique(&want),
        ..ConvertOptions::default()
    };
    let dockerfile = std::fs::read(dir.join("Dockerfile")).unwrap();
    let def = dockerfile_to_llb(&dockerfile, &opts, &TestResolver)
        .unwrap_or_else(|e| panic!("{prefix}: {e}"))
        .definition;
    let source = def.source.expect("a source map");
    let info = pb::SourceInfo {
        filename: "Dockerfile".into(),
        data: dockerfile.clone(),
        definition: None,
        language: "Dockerfile".into(),
    };
    assert_eq!(source.infos, [info], "{prefix}: infos");
    let want_keys: Vec<&String> = want_def.source.as_ref().unwrap().locations.keys().collect();
    let got_keys: Vec<&String> = source.locations.keys().collect();
    assert_eq!(got_keys, want_keys, "{prefix}: located ops");

    let text = String::from_utf8(dockerfile).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    for (digest, locs) in &source.locations {
        let name = want_def.metadata[digest]
            .description
            .get("llb.customname")
            .cloned()
            .unwrap_or_default();
        let locs = &locs.locations;
        if name.starts_with("[internal]") {
            assert!(locs.is_empty(), "{prefix}: {name} has a location");
            continue;
        }
        assert!(!locs.is_empty(), "{prefix}: {name} has no location");
        for l in locs {
            assert_eq!(l.source_index, 0);
            let starts: Vec<i32> = l.ranges.iter().map(|r| line_of(r, true)).collect();
            let ends: Vec<i32> = l.ranges.iter().map(|r| line_of(r, false)).collect();
            assert_eq!(starts, ends, "{prefix}: {name}: one range per line");
            let first = starts[0];
            let want_lines: Vec<i32> = (first..first + starts.len() as i32).collect();
            assert_eq!(starts, want_lines, "{prefix}: {name}: consecutive lines");
            let first_line = lines[first as usize - 1].trim_start().to_uppercase();
            assert!(
                instructions_of(&name)
                    .iter()
                    .any(|i| first_line.starts_with(i.as_str())),
                "{prefix}: {name} placed on line {first}: {first_line}"
            );
        }
    }
}

/// A range's line; its character must be 0 (BuildKit's parser ranges are whole lines).
fn line_of(r: &pb::Range, start: bool) -> i32 {
    let p = if start { &r.start } else { &r.end };
    let p = p.as_ref().expect("a position");
    assert_eq!(p.character, 0);
    p.line
}

/// The instructions an op's step name allows it to come from: ONBUILD steps are placed on the
/// FROM of the stage that runs them, and an image source also serves COPY --from=<image>.
fn instructions_of(name: &str) -> Vec<String> {
    let step = name.split_once("] ").map_or(name, |(_, s)| s);
    if step.starts_with("ONBUILD ") {
        return vec!["FROM".into()];
    }
    let step = step.strip_prefix("LINK ").unwrap_or(step);
    match step.split(' ').next().unwrap_or_default() {
        "FROM" => vec!["FROM".into(), "COPY".into()],
        i => vec![i.to_string()],
    }
}

/// Config and history: with the case's args and .dockerignore, as expected.json was built.
fn check_config(prefix: &str) {
    let dir = case_dir(prefix);
    let opts = build_options(&dir);
    let dockerfile = std::fs::read(dir.join("Dockerfile")).unwrap();
    let image = dockerfile_to_llb(&dockerfile, &opts, &TestResolver)
        .unwrap_or_else(|e| panic!("{prefix}: {e}"))
        .image;
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    let got_config = serde_json::to_value(&image.config).unwrap();
    assert_eq!(got_config, expected["config"], "{prefix}: config");
    let got_history: Vec<serde_json::Value> = image
        .history
        .iter()
        .map(|h| serde_json::json!({"created_by": h.created_by, "empty_layer": h.empty_layer}))
        .collect();
    assert_eq!(
        serde_json::Value::Array(got_history),
        expected["history"],
        "{prefix}: history"
    );
}

macro_rules! cases {
    ($($name:ident: $prefix:literal),* $(,)?) => {
        mod llb {
            $(#[test] fn $name() { super::check_llb($prefix) })*
        }
        mod config {
            $(#[test] fn $name() { super::check_config($prefix) })*
        }
        mod source_map {
            $(#[test] fn $name() { super::check_source_map($prefix) })*
        }
    };
}

cases! {
    case01: "01-",
    case02: "02-",
    case03: "03-",
    case04: "04-",
    case05: "05-",
    case06: "06-",
    case07: "07-",
    case08: "08-",
    case09: "09-",
    case10: "10-",
    case11: "11-",
    case12: "12-",
    case13: "13-",
    case14: "14-",
}

fn convert_err(dockerfile: &str, target: Option<&str>) -> String {
    let opts = ConvertOptions {
        target: target.map(String::from),
        local_unique: Some("x".into()),
        ..ConvertOptions::default()
    };
    match dockerfile_to_llb(dockerfile.as_bytes(), &opts, &TestResolver) {
        Ok(_) => panic!("conversion of {dockerfile:?} should fail"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn run_mount_errors_name_the_line_and_problem() {
    let cases = [
        (
            "RUN --mount=type=cach,target=/c true",
            "dockerfile line 2: RUN: unsupported mount type \"cach\" (did you mean cache?)",
        ),
        (
            "RUN --mount=type=bind,from=later,target=x true\nFROM localhost:5000/busybox AS later\nFROM later\nCOPY --from=0 /a /a",
            "cannot mount from stage \"later\" to \"x\", stage needs to be defined before current command",
        ),
        (
            "RUN --mount=type=bind,target=/ true",
            "dockerfile line 2: RUN: invalid mount target \"/\"",
        ),
        (
            "RUN --mount=from=$STAGE,target=/x true",
            "'from' doesn't support variable expansion, define alias stage instead",
        ),
        (
            "RUN --mount=type=ssh,source=/a true",
            "dockerfile line 2: RUN: ssh does not support source",
        ),
        (
            "RUN --network=bridge true",
            "invalid network mode \"bridge\"",
        ),
        (
            "RUN --security=privileged true",
            "security \"privileged\" is not valid",
        ),
        (
            "RUN --device=nvidia.com/gpu=all true",
            "RUN --device is not supported yet",
        ),
    ];
    for (run, want) in cases {
        let e = convert_err(&format!("FROM localhost:5000/busybox\n{run}\n"), None);
        assert!(e.contains(want), "{run}: {e}");
        assert!(e.contains("line 2"), "{run}: {e}");
    }
}

#[test]
fn errors_name_the_problem() {
    assert!(convert_err("", None).contains("cannot be empty"));
    assert!(
        convert_err("FROM localhost:5000/busybox\n", Some("nope"))
            .contains("\"nope\" could not be found")
    );
    assert!(
        convert_err("FROM localhost:5000/busybox\nCOPY --frm=a b c\n", None)
            .contains("unknown flag: --frm")
    );
    assert!(convert_err("FROM unknown-image\n", None).contains("unknown-image"));
    let e = convert_err("FROM localhost:5000/busybox\nCOPY --from=$X a b\n", None);
    assert!(
        e.contains("variable expansion is not supported for --from"),
        "{e}"
    );
}

/// Step name -> the lines of each location of its op, for a real build of a case.
fn located_lines(prefix: &str) -> BTreeMap<String, Vec<Vec<i32>>> {
    let dir = case_dir(prefix);
    let opts = ConvertOptions {
        local_unique: Some("x".into()),
        ..ConvertOptions::default()
    };
    let dockerfile = std::fs::read(dir.join("Dockerfile")).unwrap();
    let def = dockerfile_to_llb(&dockerfile, &opts, &TestResolver)
        .unwrap()
        .definition;
    let source = def.source.unwrap();
    source
        .locations
        .iter()
        .map(|(d, l)| {
            let name = def.metadata[d].description["llb.customname"].clone();
            let name = name
                .split_once("] ")
                .map_or(name.clone(), |(_, s)| s.to_string());
            let lines = l
                .locations
                .iter()
                .map(|l| l.ranges.iter().map(|r| line_of(r, true)).collect())
                .collect();
            (name, lines)
        })
        .collect()
}

#[test]
fn continuation_lines_and_heredoc_bodies_are_part_of_the_range() {
    let one = located_lines("01-");
    assert_eq!(one["WORKDIR /opt/greeter"], [vec![6]]);
    assert_eq!(one["COPY bin/greet.sh ./bin/"], [vec![7]]);
    let run = one.keys().find(|k| k.starts_with("RUN chmod")).unwrap();
    assert_eq!(one[run], [vec![9, 10, 11, 12, 13]]);
    assert_eq!(one["WORKDIR .."], [vec![16]]);

    let six = located_lines("06-");
    assert_eq!(
        six["RUN <<EOF (mkdir -p /hd...)"],
        [vec![9, 10, 11, 12, 13]]
    );
    assert_eq!(six["RUN cat > /hd/dash.txt <<-EOT"], [vec![26, 27, 28, 29]]);
    assert_eq!(
        six["COPY <<one.txt <<two.txt /hd/multi/"],
        [vec![56, 57, 58, 59, 60]]
    );
    assert_eq!(
        six["RUN /usr/local/bin/hello > /hd/hello-output.txt"],
        [vec![68]]
    );
}

#[test]
fn shared_ops_list_every_instruction_and_onbuild_steps_point_at_their_from() {
    // One image source op serves both FROMs and the COPY --from=<image>, in marshal order.
    let two = located_lines("02-");
    let from = two.keys().find(|k| k.starts_with("FROM ")).unwrap();
    assert_eq!(two[from], [vec![24], vec![7], vec![30]]);
    let seven = located_lines("07-");
    let trigger = seven.keys().find(|k| k.starts_with("ONBUILD RUN")).unwrap();
    assert_eq!(seven[trigger], [vec![10]]);
    // COPY --link: the copy and its merge both come from the COPY.
    let fourteen = located_lines("14-");
    assert_eq!(fourteen["COPY --link linked.txt /srv/linked/"], [vec![9]]);
    assert_eq!(
        fourteen["LINK COPY --link linked.txt /srv/linked/"],
        [vec![9]]
    );
}
