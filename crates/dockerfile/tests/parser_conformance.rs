//! BuildKit's parser test data (conformance/buildkit/parser, copied unchanged) plus BuildKit's
//! table-driven parser tests rewritten against Kiln's API.

use kiln_dockerfile::ast::Heredoc;
use kiln_dockerfile::parser::{
    ParseErrorKind, chomp_heredoc_content, dump, heredocs_from_line, parse, parse_heredoc,
    suggest_instruction,
};
use std::path::PathBuf;

fn data(rel: &str) -> PathBuf {
    // The repo's single copy of BuildKit's test data (with its LICENSE and README).
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../conformance/buildkit/parser")
        .join(rel)
}

fn read(rel: &str) -> Vec<u8> {
    std::fs::read(data(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

macro_rules! positive {
    ($($name:ident => $dir:literal,)*) => {$(
        #[test]
        fn $name() {
            let src = read(concat!("testfiles/", $dir, "/Dockerfile"));
            let want = String::from_utf8(read(concat!("testfiles/", $dir, "/result"))).unwrap();
            let got = parse(&src).unwrap_or_else(|e| panic!("{}: {e}", $dir));
            assert_eq!(dump(&got.ast) + "\n", want, "case {}", $dir);
        }
    )*};
}

positive! {
    add_copy_with_json => "ADD-COPY-with-JSON",
    args => "args",
    brimstone_consuldock => "brimstone-consuldock",
    brimstone_docker_consul => "brimstone-docker-consul",
    continue_at_eof => "continue-at-eof",
    continue_indent => "continueIndent",
    cpuguy83_nagios => "cpuguy83-nagios",
    docker => "docker",
    env => "env",
    escape => "escape",
    escape_after_comment => "escape-after-comment",
    escape_nonewline => "escape-nonewline",
    escape_with_syntax => "escape-with-syntax",
    escapes => "escapes",
    flags => "flags",
    health => "health",
    influxdb => "influxdb",
    jeztah_json_inside_string => "jeztah-invalid-json-json-inside-string",
    jeztah_json_inside_string_double => "jeztah-invalid-json-json-inside-string-double",
    jeztah_single_quotes => "jeztah-invalid-json-single-quotes",
    jeztah_unterminated_bracket => "jeztah-invalid-json-unterminated-bracket",
    jeztah_unterminated_string => "jeztah-invalid-json-unterminated-string",
    json => "json",
    kartar_entrypoint_oddities => "kartar-entrypoint-oddities",
    lk4d4_the_edge_case_generator => "lk4d4-the-edge-case-generator",
    mail => "mail",
    multiple_volumes => "multiple-volumes",
    mumble => "mumble",
    nginx => "nginx",
    tf2 => "tf2",
    trailing_backslash => "trailing-backslash",
    weechat => "weechat",
    znc => "znc",
}

#[test]
fn every_positive_case_has_a_test() {
    let count = std::fs::read_dir(data("testfiles")).unwrap().count();
    assert_eq!(count, 33);
}

macro_rules! negative {
    ($($name:ident => $dir:literal,)*) => {$(
        #[test]
        fn $name() {
            let src = read(concat!("testfiles-negative/", $dir, "/Dockerfile"));
            assert!(parse(&src).is_err(), "case {} must fail", $dir);
        }
    )*};
}

negative! {
    negative_empty_dockerfile => "empty_dockerfile",
    negative_env_no_value => "env_no_value",
    negative_only_comments => "only_comments",
    negative_shykes_nested_json => "shykes-nested-json",
}

#[test]
fn line_numbers() {
    let res = parse(&read("testfile-line/Dockerfile")).unwrap();
    assert_eq!((res.ast.start_line, res.ast.end_line), (5, 31));
    let spans: Vec<_> = res
        .ast
        .children
        .iter()
        .map(|c| (c.start_line, c.end_line))
        .collect();
    assert_eq!(spans, [(5, 5), (11, 12), (17, 31)]);
}

#[test]
fn empty_continuation_lines_warn() {
    let src = "\nFROM alpine:3.6\n\nRUN valid \\\n    continuation\n\nRUN something \\\n\n    following \\\n\n    more\n\nRUN another \\\n\n    thing\n\nRUN non-indented \\\n# this is a comment\n   after-comment\n\nRUN indented \\\n    # this is an indented comment\n    comment\n\t";
    let res = parse(src.as_bytes()).unwrap();
    assert_eq!(res.warnings.len(), 2);
    assert!(
        res.warnings[0]
            .short
            .contains("Empty continuation line found in")
    );
    assert!(
        res.warnings[0]
            .short
            .contains("RUN something     following     more")
    );
    assert!(res.warnings[1].short.contains("RUN another     thing"));
    assert!(res.warnings[0].detail[0].contains("will become errors in a future release"));
    assert_eq!(res.warnings[0].line, 11);
}

#[test]
fn line_too_long() {
    let src = format!("\n\t\tFROM image\n\t\tLABEL test={}\n", "a".repeat(65536));
    let err = parse(src.as_bytes()).unwrap_err();
    assert_eq!(err.kind, ParseErrorKind::LineTooLong);
    assert!(
        err.to_string()
            .ends_with("dockerfile line greater than max allowed size of 65535"),
        "{err}"
    );
    // A line of exactly 64 KiB with its newline is still accepted.
    let ok = format!("FROM a\nLABEL x={}\n", "b".repeat(65536 - 9));
    assert!(parse(ok.as_bytes()).is_ok());
}

#[test]
fn directives_are_collected() {
    let src = b"\xEF\xBB\xBF# syntax = docker/dockerfile:1 // x\n#ESCAPE=`\n# check=skip=all\nFROM a\nRUN b `\n  c\n";
    let res = parse(src).unwrap();
    assert_eq!(res.escape, '`');
    let names: Vec<_> = res
        .directives
        .iter()
        .map(|d| (d.name.as_str(), d.value.as_str(), d.line))
        .collect();
    assert_eq!(
        names,
        [
            ("syntax", "docker/dockerfile:1 // x", 1),
            ("escape", "`", 2),
            ("check", "skip=all", 3)
        ]
    );
    assert_eq!(dump(&res.ast), "(from \"a\")\n(run \"b   c\")");
}

#[test]
fn directives_end_at_first_other_line() {
    // A blank line or a plain comment ends the directive block.
    let res = parse(b"# foo\n# escape=`\nFROM a\n").unwrap();
    assert_eq!(res.escape, '\\');
    assert!(res.directives.is_empty());
    assert_eq!(res.ast.children[0].prev_comment, ["foo", "escape=`"]);
    let res = parse(b"\n# escape=`\nFROM a\n").unwrap();
    assert_eq!(res.escape, '\\');
}

#[test]
fn directive_errors_name_the_line() {
    let err = parse(b"# escape=`\n# escape=\\\nFROM a\n").unwrap_err();
    assert_eq!(err.line, 2);
    assert_eq!(
        err.kind,
        ParseErrorKind::DuplicateDirective("escape".into())
    );
    let err = parse(b"# syntax=x\n# escape=x\nFROM a\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "dockerfile line 2: invalid escape token 'x' does not match ` or \\"
    );
}

#[test]
fn parse_errors_carry_instruction_lines() {
    let err = parse(b"FROM a\n\nENV \\\n  PATH\n").unwrap_err();
    assert_eq!((err.line, err.end_line), (3, 4));
    assert_eq!(err.kind, ParseErrorKind::MissingValue("ENV".into()));
    let err = parse(b"FROM a\nENV a=b c\n").unwrap_err();
    assert_eq!(
        err.to_string(),
        "dockerfile line 2: Syntax error - can't find = in \"c\". Must be of the form: name=value"
    );
    let err = parse(b"FROM a\nCMD [\"a\", 1]\n").unwrap_err();
    assert_eq!(err.kind, ParseErrorKind::NotStringArray);
    let err = parse(b"# just a comment\n\n").unwrap_err();
    assert_eq!(err.kind, ParseErrorKind::NoInstructions);
    let err = parse(b"FROM a\nRUN <<EOF\nline\n").unwrap_err();
    assert_eq!(
        (err.line, err.kind),
        (2, ParseErrorKind::UnterminatedHeredoc)
    );
}

#[test]
fn unknown_instructions_are_kept_with_a_suggestion_helper() {
    let res = parse(b"FROM a\nRUNN echo\n").unwrap();
    assert_eq!(dump(&res.ast), "(from \"a\")\n(runn \"\")");
    assert_eq!(suggest_instruction("RUNN").as_deref(), Some("RUN"));
    let kind = ParseErrorKind::UnknownInstruction {
        name: "RUNN".into(),
        suggestion: suggest_instruction("RUNN"),
    };
    assert_eq!(
        kind.to_string(),
        "unknown instruction: RUNN (did you mean RUN?)"
    );
}

#[test]
fn node_fields() {
    let src = b"# the base\nFROM --platform=$X a AS b\nONBUILD RUN [\"x\"]\nCOPY --from=b [\"s\", \"d\"]\n";
    let res = parse(src).unwrap();
    let from = &res.ast.children[0];
    assert_eq!(from.value, "from");
    assert_eq!(from.flags, ["--platform=$X"]);
    assert_eq!(from.original, "FROM --platform=$X a AS b");
    assert_eq!(from.prev_comment, ["the base"]);
    let onbuild = &res.ast.children[1];
    let inner = &onbuild.next.as_ref().unwrap().children[0];
    assert_eq!(inner.value, "run");
    assert_eq!(inner.original, "RUN [\"x\"]");
    assert_eq!(inner.attributes.get("json"), Some(&true));
    let copy = &res.ast.children[2];
    assert_eq!(copy.attributes.get("json"), Some(&true));
    assert_eq!(dump(copy), "copy [\"--from=b\"] \"s\" \"d\"");
}

#[test]
fn hostile_input_does_not_panic() {
    // Continuations make one logical line longer than the 64 KiB physical-line limit.
    let deep = format!("{}RUN x\n", "ONBUILD \\\n".repeat(10_000));
    assert_eq!(
        parse(deep.as_bytes()).unwrap_err().kind,
        ParseErrorKind::TooDeep
    );
    let nested = format!("FROM a\nRUN {}<<EOF\nEOF\n", "${a:-".repeat(5000));
    assert!(parse(nested.as_bytes()).is_ok());
    for src in [
        &b"\xff\xfe\nFROM \xc3"[..],
        b"FROM a\nHEALTHCHECK \xc3\xa0",
        b"FROM a\nCOPY --x=\xc3\xa0y \\",
        b"\\",
        b"FROM a\nRUN <<",
        b"FROM a\nRUN 99999999999999999999999<<EOF\nEOF\n",
    ] {
        let _ = parse(src);
    }
}

fn doc(name: &str, content: &str, expand: bool, chomp: bool, fd: u32) -> Heredoc {
    Heredoc {
        name: name.into(),
        content: content.into(),
        expand,
        chomp,
        file_descriptor: fd,
    }
}

#[test]
fn heredocs_are_extracted() {
    let src = "\nFROM alpine:3.6\n\nENV NAME=me\n\nRUN ls\n\nUSER <<INVALID\nINVALID\n\nRUN <<EMPTY\nEMPTY\n\nRUN 3<<EMPTY2\nEMPTY2\n\nRUN \"<<NOHEREDOC\"\n\nRUN <<INDENT\n\tfoo\n\tbar\nINDENT\n\nRUN <<-UNINDENT\n\tbaz\n\tquux\nUNINDENT\n\nRUN <<-UNINDENT2\n\tbaz\n\tquux\n\tUNINDENT2\n\nRUN <<-EXPAND\n\texpand $NAME\nEXPAND\n\nRUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND\n\nRUN <<COPY\necho hello world\necho foo bar\nCOPY\n\nRUN <<COMMENT\n# internal comment\necho hello world\necho foo bar # trailing comment\nCOMMENT\n\nRUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT\n\nCOPY <<FILE1 <<FILE2 /dest\ncontent 1\nFILE1\ncontent 2\nFILE2\n\nCOPY <<EOF /quotes\n\"foo\"\n'bar'\nEOF\n\nCOPY <<X <<Y /dest\nY\nX\nX\nY\n\nRUN <<COMPLEX python3\nprint('hello world')\nCOMPLEX\n\nCOPY <<file.txt /dest\nhello world\nfile.txt\n\nRUN <<eo'f'\necho foo\neof\n\nRUN <<eo\\'f\necho foo\neo'f\n\nRUN <<'e'o\\'f\necho foo\neo'f\n\nRUN <<'one two'\necho bar\none two\n\nRUN <<$EOF\n$EOF\n\nRUN <<  EOF\nEOF\n\nRUN <<  EOF  > foo\nEOF\n\t";
    let t = true;
    let f = false;
    let want: Vec<Vec<Heredoc>> = vec![
        vec![],
        vec![],
        vec![],
        vec![],
        vec![doc("EMPTY", "", t, f, 0)],
        vec![doc("EMPTY2", "", t, f, 3)],
        vec![],
        vec![doc("INDENT", "\tfoo\n\tbar\n", t, f, 0)],
        vec![doc("UNINDENT", "\tbaz\n\tquux\n", t, t, 0)],
        vec![doc("UNINDENT2", "\tbaz\n\tquux\n", t, t, 0)],
        vec![doc("EXPAND", "\texpand $NAME\n", t, t, 0)],
        vec![doc("NOEXPAND", "\tdon't expand $NAME\n", f, t, 0)],
        vec![doc("COPY", "echo hello world\necho foo bar\n", t, f, 0)],
        vec![doc(
            "COMMENT",
            "# internal comment\necho hello world\necho foo bar # trailing comment\n",
            t,
            f,
            0,
        )],
        vec![doc("MOUNT", "echo hello\n", t, f, 0)],
        vec![
            doc("FILE1", "content 1\n", t, f, 0),
            doc("FILE2", "content 2\n", t, f, 0),
        ],
        vec![doc("EOF", "\"foo\"\n'bar'\n", t, f, 0)],
        vec![doc("X", "Y\n", t, f, 0), doc("Y", "X\n", t, f, 0)],
        vec![doc("COMPLEX", "print('hello world')\n", t, f, 0)],
        vec![doc("file.txt", "hello world\n", t, f, 0)],
        vec![doc("eof", "echo foo\n", f, f, 0)],
        vec![doc("eo'f", "echo foo\n", t, f, 0)],
        vec![doc("eo'f", "echo foo\n", f, f, 0)],
        vec![doc("one two", "echo bar\n", f, f, 0)],
        vec![doc("$EOF", "", t, f, 0)],
        vec![doc("EOF", "", t, f, 0)],
        vec![doc("EOF", "", t, f, 0)],
    ];
    let res = parse(src.as_bytes()).unwrap();
    assert_eq!(res.ast.children.len(), want.len() + 1);
    for (i, w) in want.iter().enumerate() {
        let child = &res.ast.children[i + 1];
        assert_eq!(&child.heredocs, w, "instruction {i}: {}", child.original);
    }
}

#[test]
fn json_forms_have_no_heredocs() {
    let res =
        parse(b"\nFROM alpine:3.6\n\nRUN [\"whoami\"]\nRUN [\"<<EOF\"]\nRUN [\"<<'EOF'\"]\n\t")
            .unwrap();
    for child in &res.ast.children[1..] {
        assert!(child.heredocs.is_empty());
    }
}

#[test]
fn onbuild_heredocs_attach_to_onbuild() {
    let res = parse(b"FROM a\nONBUILD RUN <<EOF\nhi\nEOF\n").unwrap();
    assert_eq!(
        res.ast.children[1].heredocs,
        [doc("EOF", "hi\n", true, false, 0)]
    );
    assert_eq!(res.ast.children[1].end_line, 4);
}

#[test]
fn heredoc_chomp() {
    assert_eq!(
        chomp_heredoc_content("\thello\n\tworld\n"),
        "hello\nworld\n"
    );
}

#[test]
fn heredoc_words() {
    for src in [
        "<<EOF",
        "<<'EOF'",
        "<<\"EOF\"",
        "<<-EOF",
        "<<-'EOF'",
        "<<-\"EOF\"",
        "<<EO\"F\"",
        "<< EOF",
        "<<- EOF",
    ] {
        let d = parse_heredoc(src)
            .unwrap()
            .unwrap_or_else(|| panic!("{src}"));
        assert_eq!(d.name, "EOF", "{src}");
    }
    for src in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
        assert!(parse_heredoc(src).is_err(), "{src}");
    }
    for src in ["", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh"] {
        assert_eq!(parse_heredoc(src).unwrap(), None, "{src}");
    }
}

#[test]
fn heredocs_in_lines() {
    let cases: [(&str, &[&str]); 10] = [
        ("RUN <<EOF", &["EOF"]),
        ("RUN <<-EOF", &["EOF"]),
        ("RUN <<EOF", &["EOF"]),
        // The lexer splits `<<-` from `EOF`, so BuildKit finds no heredoc here (its own
        // test only checks the names it does find).
        ("RUN <<- EOF", &[]),
        ("RUN << -EOF", &["-EOF"]),
        ("RUN <<'EOF'", &["EOF"]),
        ("RUN 4<<EOF", &["EOF"]),
        ("RUN <<EOF <<EOF2", &["EOF", "EOF2"]),
        ("RUN '<<EOF'", &[]),
        ("RUN \"<<EOF\"", &[]),
    ];
    for (line, names) in cases {
        let docs = heredocs_from_line(line).unwrap();
        let got: Vec<_> = docs.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(got, names, "{line}");
    }
}
