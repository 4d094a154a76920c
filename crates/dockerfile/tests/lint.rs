//! Build checks: each rule with a Dockerfile that triggers it (exact message and line) and one
//! that does not, after BuildKit's rule docs (frontend/dockerfile/docs/rules).

use kiln_dockerfile::convert::{
    ConvertError, ConvertOptions, ImageResolver, ResolvedImage, dockerfile_to_llb,
};
use kiln_dockerfile::lint::Config;
use kiln_llb::pb;

/// Every image exists: a config with only PATH set, like most base images.
struct AnyImage;

impl ImageResolver for AnyImage {
    fn resolve(&self, reference: &str, _: &pb::Platform) -> Result<ResolvedImage, String> {
        let mut config = kiln_oci::Image::default();
        config.config.env =
            vec!["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()];
        config.rootfs.diff_ids = vec![format!("sha256:{}", "1".repeat(64))];
        Ok(ResolvedImage {
            reference: reference.to_string(),
            digest: format!("sha256:{}", "0".repeat(64)),
            config,
        })
    }
}

struct Case {
    name: &'static str,
    dockerfile: &'static str,
    /// `.dockerignore` patterns.
    ignore: &'static [&'static str],
    /// Check options as the client gives them (replacing the `# check=` directive).
    check: Option<&'static str>,
    /// (rule, line, message), in report order.
    expected: &'static [(&'static str, usize, &'static str)],
}

const fn case(
    name: &'static str,
    dockerfile: &'static str,
    expected: &'static [(&'static str, usize, &'static str)],
) -> Case {
    Case {
        name,
        dockerfile,
        ignore: &[],
        check: None,
        expected,
    }
}

fn lint(c: &Case) -> Result<Vec<(String, usize, String)>, ConvertError> {
    let opts = ConvertOptions {
        ignore_patterns: c.ignore.iter().map(|s| s.to_string()).collect(),
        local_unique: Some("test".into()),
        lint: c.check.map(|s| Config::parse(s).unwrap_or_default()),
        all_stages: true,
        ..ConvertOptions::default()
    };
    let converted = dockerfile_to_llb(c.dockerfile.as_bytes(), &opts, &AnyImage)?;
    Ok(converted
        .warnings
        .iter()
        .map(|w| (w.rule.to_string(), w.start_line, w.message.clone()))
        .collect())
}

fn check_all(cases: &[Case]) {
    let mut failures = Vec::new();
    for c in cases {
        let want: Vec<(String, usize, String)> = c
            .expected
            .iter()
            .map(|(r, l, m)| (r.to_string(), *l, m.to_string()))
            .collect();
        match lint(c) {
            Ok(got) if got == want => {}
            Ok(got) => failures.push(format!("{}:\n  got  {got:?}\n  want {want:?}", c.name)),
            Err(e) => failures.push(format!("{}: conversion failed: {e}", c.name)),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn casing_rules() {
    check_all(&[
        case(
            "StageNameCasing",
            "FROM alpine AS BuilderBase\nRUN true\n",
            &[(
                "StageNameCasing",
                1,
                "Stage name 'BuilderBase' should be lowercase",
            )],
        ),
        case(
            "StageNameCasing clean",
            "FROM alpine AS builder-base\nRUN true\n",
            &[],
        ),
        case(
            "FromAsCasing",
            "FROM debian:latest as builder\nRUN true\n",
            &[(
                "FromAsCasing",
                1,
                "'as' and 'FROM' keywords' casing do not match",
            )],
        ),
        case(
            "FromAsCasing lower",
            "from debian:latest AS builder\nrun true\n",
            &[(
                "FromAsCasing",
                1,
                "'AS' and 'from' keywords' casing do not match",
            )],
        ),
        case(
            "FromAsCasing clean",
            "FROM debian:latest AS builder\nRUN true\n",
            &[],
        ),
        case(
            "ConsistentInstructionCasing",
            "FROM alpine\nRUN echo hello\ncmd [\"echo\", \"hello\"]\n",
            &[(
                "ConsistentInstructionCasing",
                3,
                "Command 'cmd' should match the case of the command majority (uppercase)",
            )],
        ),
        case(
            "ConsistentInstructionCasing mixed",
            "from alpine\nrun echo hello\nRun echo world\n",
            &[(
                "ConsistentInstructionCasing",
                3,
                "Command 'Run' should match the case of the command majority (lowercase)",
            )],
        ),
        case(
            "ConsistentInstructionCasing clean",
            "from alpine\nrun echo hello\ncmd [\"echo\", \"hello\"]\n",
            &[],
        ),
    ]);
}

#[test]
fn stage_name_rules() {
    check_all(&[
        case(
            "DuplicateStageName",
            "FROM alpine AS builder\nRUN true\nFROM alpine AS builder\nRUN true\n",
            &[(
                "DuplicateStageName",
                3,
                "Duplicate stage name \"builder\", stage names should be unique",
            )],
        ),
        case(
            "DuplicateStageName clean",
            "FROM alpine AS a\nRUN true\nFROM alpine AS b\nRUN true\n",
            &[],
        ),
        case(
            "ReservedStageName",
            "FROM alpine AS scratch\nRUN true\n",
            &[(
                "ReservedStageName",
                1,
                "Stage name should not use the same name as reserved stage \"scratch\"",
            )],
        ),
        case(
            "ReservedStageName clean",
            "FROM alpine AS base\nRUN true\n",
            &[],
        ),
    ]);
}

#[test]
fn instruction_form_rules() {
    check_all(&[
        case(
            "JSONArgsRecommended CMD",
            "FROM alpine\nCMD my-program start\n",
            &[(
                "JSONArgsRecommended",
                2,
                "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
            )],
        ),
        case(
            "JSONArgsRecommended ENTRYPOINT",
            "FROM alpine\nENTRYPOINT my-program start\n",
            &[(
                "JSONArgsRecommended",
                2,
                "JSON arguments recommended for ENTRYPOINT to prevent unintended behavior related to OS signals",
            )],
        ),
        case(
            "JSONArgsRecommended clean (exec form, or SHELL set)",
            "FROM alpine\nCMD [\"my-program\", \"start\"]\nSHELL [\"/bin/bash\", \"-c\"]\nENTRYPOINT my-program start\n",
            &[],
        ),
        case(
            "MaintainerDeprecated",
            "FROM alpine\nMAINTAINER moby@example.com\n",
            &[(
                "MaintainerDeprecated",
                2,
                "Maintainer instruction is deprecated in favor of using label",
            )],
        ),
        case(
            "MaintainerDeprecated clean",
            "FROM alpine\nLABEL org.opencontainers.image.authors=\"moby@example.com\"\n",
            &[],
        ),
        case(
            "LegacyKeyValueFormat",
            "FROM alpine\nARG foo=bar\nENV foo bar\nLABEL a b\n",
            &[
                (
                    "LegacyKeyValueFormat",
                    3,
                    "\"ENV key=value\" should be used instead of legacy \"ENV key value\" format",
                ),
                (
                    "LegacyKeyValueFormat",
                    4,
                    "\"LABEL key=value\" should be used instead of legacy \"LABEL key value\" format",
                ),
            ],
        ),
        case(
            "LegacyKeyValueFormat clean",
            "FROM alpine\nENV foo=bar\nLABEL a=b\n",
            &[],
        ),
        case(
            "MultipleInstructionsDisallowed",
            "FROM alpine\nENTRYPOINT [\"id\"]\nENTRYPOINT [\"echo\"]\nCMD [\"a\"]\nCMD [\"b\"]\nHEALTHCHECK NONE\nHEALTHCHECK NONE\n",
            &[
                (
                    "MultipleInstructionsDisallowed",
                    2,
                    "Multiple ENTRYPOINT instructions should not be used in the same stage because only the last one will be used",
                ),
                (
                    "MultipleInstructionsDisallowed",
                    4,
                    "Multiple CMD instructions should not be used in the same stage because only the last one will be used",
                ),
                (
                    "MultipleInstructionsDisallowed",
                    6,
                    "Multiple HEALTHCHECK instructions should not be used in the same stage because only the last one will be used",
                ),
            ],
        ),
        case(
            "MultipleInstructionsDisallowed clean (one per stage)",
            "FROM alpine AS a\nCMD [\"a\"]\nFROM a\nCMD [\"b\"]\n",
            &[],
        ),
        case(
            "WorkdirRelativePath",
            "FROM alpine\nWORKDIR app/\nWORKDIR sub\n",
            &[(
                "WorkdirRelativePath",
                2,
                "Relative workdir \"app/\" can have unexpected results if the base image changes",
            )],
        ),
        case(
            "WorkdirRelativePath clean (absolute first, inherited by a stage)",
            "FROM alpine AS base\nWORKDIR /app\nFROM base\nWORKDIR src\n",
            &[],
        ),
        case(
            "ExposeProtoCasing",
            "FROM alpine\nEXPOSE 80/TcP\n",
            &[(
                "ExposeProtoCasing",
                2,
                "Defined protocol '80/TcP' in EXPOSE instruction should be lowercase",
            )],
        ),
        case(
            "ExposeProtoCasing clean",
            "FROM alpine\nEXPOSE 80/tcp 53/udp\n",
            &[],
        ),
        case(
            "ExposeInvalidFormat",
            "FROM alpine\nEXPOSE 127.0.0.1:80:80 8080:80\n",
            &[
                (
                    "ExposeInvalidFormat",
                    2,
                    "EXPOSE instruction should not define an IP address or host-port mapping, found '127.0.0.1:80:80'",
                ),
                (
                    "ExposeInvalidFormat",
                    2,
                    "EXPOSE instruction should not define an IP address or host-port mapping, found '8080:80'",
                ),
            ],
        ),
        case(
            "ExposeInvalidFormat clean",
            "FROM alpine\nEXPOSE 80 443\n",
            &[],
        ),
        case(
            "NoEmptyContinuation",
            "FROM alpine\nRUN apk add \\\n\n    gnupg \\\n    curl\n",
            &[("NoEmptyContinuation", 5, "Empty continuation line")],
        ),
        case(
            "NoEmptyContinuation clean",
            "FROM alpine\nRUN apk add \\\n    gnupg \\\n    curl\n",
            &[],
        ),
    ]);
}

#[test]
fn variable_rules() {
    check_all(&[
        case(
            "UndefinedVar",
            "FROM alpine\nENV PATH=$PAHT:/app/bin\n",
            &[(
                "UndefinedVar",
                2,
                "Usage of undefined variable '$PAHT' (did you mean $PATH?)",
            )],
        ),
        case(
            "UndefinedVar no suggestion",
            "FROM alpine\nCOPY $foo .\n",
            &[("UndefinedVar", 2, "Usage of undefined variable '$foo'")],
        ),
        case(
            "UndefinedVar clean (declared ARG, ENV, image env; RUN is the shell's)",
            "FROM alpine\nARG foo\nENV bar=baz\nCOPY $foo $bar /\nENV PATH=$PATH:/x\nRUN echo $nothing\n",
            &[],
        ),
        case(
            "UndefinedArgInFrom",
            "FROM node:22${VARIANT} AS jsbuilder\n",
            &[(
                "UndefinedArgInFrom",
                1,
                "FROM argument 'VARIANT' is not declared",
            )],
        ),
        case(
            "UndefinedArgInFrom suggestion",
            "ARG VERSION=1\nFROM node:${VERSIO}\n",
            &[
                (
                    "InvalidDefaultArgInFrom",
                    2,
                    "Default value for ARG node:${VERSIO} results in empty or invalid base image name",
                ),
                (
                    "UndefinedArgInFrom",
                    2,
                    "FROM argument 'VERSIO' is not declared (did you mean VERSION?)",
                ),
            ],
        ),
        case(
            "UndefinedArgInFrom clean",
            "ARG NODE_VERSION=20\nFROM node:${NODE_VERSION}-alpine\n",
            &[],
        ),
        case(
            "InvalidDefaultArgInFrom",
            "ARG TAG\nFROM busybox:${TAG}\n",
            &[(
                "InvalidDefaultArgInFrom",
                2,
                "Default value for ARG busybox:${TAG} results in empty or invalid base image name",
            )],
        ),
        case(
            "InvalidDefaultArgInFrom clean",
            "ARG TAG=latest\nFROM busybox:${TAG}\n",
            &[],
        ),
        case(
            "RedundantTargetPlatform",
            "FROM --platform=$TARGETPLATFORM alpine AS builder\nRUN true\n",
            &[(
                "RedundantTargetPlatform",
                1,
                "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
            )],
        ),
        case(
            "RedundantTargetPlatform clean",
            "FROM --platform=$BUILDPLATFORM alpine AS builder\nRUN true\n",
            &[],
        ),
        case(
            "FromPlatformFlagConstDisallowed",
            "FROM --platform=linux/amd64 alpine AS base\nRUN true\n",
            &[(
                "FromPlatformFlagConstDisallowed",
                1,
                "FROM --platform flag should not use constant value \"linux/amd64\"",
            )],
        ),
        case(
            "FromPlatformFlagConstDisallowed clean (stage named for it)",
            "FROM --platform=linux/amd64 alpine AS build_amd64\nRUN true\n",
            &[],
        ),
        case(
            "SecretsUsedInArgOrEnv",
            "FROM scratch\nARG AWS_SECRET_ACCESS_KEY\nENV github_token=x\n",
            &[
                (
                    "SecretsUsedInArgOrEnv",
                    2,
                    "Do not use ARG or ENV instructions for sensitive data (ARG \"AWS_SECRET_ACCESS_KEY\")",
                ),
                (
                    "SecretsUsedInArgOrEnv",
                    3,
                    "Do not use ARG or ENV instructions for sensitive data (ENV \"github_token\")",
                ),
            ],
        ),
        case(
            "SecretsUsedInArgOrEnv clean",
            "FROM scratch\nARG PUBLIC_KEY\nENV MONKEY=1 PASSWORD_FILE=/run/secrets/pw\n",
            &[],
        ),
    ]);
}

#[test]
fn ignore_and_description_rules() {
    check_all(&[
        Case {
            ignore: &["tmp/*", "*.md"],
            ..case(
                "CopyIgnoredFile",
                "FROM scratch\nCOPY ./tmp/helloworld.txt /tmp\nADD README.md /\n",
                &[
                    (
                        "CopyIgnoredFile",
                        2,
                        "Attempting to Copy file \"tmp/helloworld.txt\" that is excluded by .dockerignore",
                    ),
                    (
                        "CopyIgnoredFile",
                        3,
                        "Attempting to Add file \"README.md\" that is excluded by .dockerignore",
                    ),
                ],
            )
        },
        Case {
            ignore: &["*.md", "!README.md"],
            ..case(
                "CopyIgnoredFile clean (exceptions disable it)",
                "FROM scratch\nCOPY README.md /\n",
                &[],
            )
        },
        Case {
            check: Some("experimental=InvalidDefinitionDescription"),
            ..case(
                "InvalidDefinitionDescription",
                "# bar this is the bar\nARG foo=bar\n# BasE this is the BasE image\nFROM scratch AS base\n",
                &[
                    (
                        "InvalidDefinitionDescription",
                        2,
                        "Comment for ARG should follow the format: `# foo <description>`",
                    ),
                    (
                        "InvalidDefinitionDescription",
                        4,
                        "Comment for FROM should follow the format: `# base <description>`",
                    ),
                ],
            )
        },
        Case {
            check: Some("experimental=InvalidDefinitionDescription"),
            ..case(
                "InvalidDefinitionDescription clean",
                "# foo this is the foo\nARG foo=bar\n\n# base this is the base image\nFROM scratch AS base\n",
                &[],
            )
        },
        case(
            "InvalidDefinitionDescription is experimental (off by default)",
            "# bar this is the bar\nARG foo=bar\nFROM scratch\n",
            &[],
        ),
    ]);
}

#[test]
fn check_options() {
    check_all(&[
        case(
            "# check=skip",
            "# check=skip=JSONArgsRecommended,MaintainerDeprecated\nFROM alpine\nMAINTAINER me\nCMD run\n",
            &[],
        ),
        case(
            "# check=skip=all",
            "# check=skip=all\nFROM alpine\nMAINTAINER me\nCMD run\n",
            &[],
        ),
        Case {
            check: Some("skip=MaintainerDeprecated"),
            ..case(
                "client options replace the directive",
                "# check=skip=JSONArgsRecommended\nFROM alpine\nMAINTAINER me\nCMD run\n",
                &[(
                    "JSONArgsRecommended",
                    4,
                    "JSON arguments recommended for CMD to prevent unintended behavior related to OS signals",
                )],
            )
        },
        case(
            "a check comment above one instruction",
            "FROM alpine\n# check=skip=MaintainerDeprecated\nMAINTAINER me\nMAINTAINER you\n",
            &[(
                "MaintainerDeprecated",
                4,
                "Maintainer instruction is deprecated in favor of using label",
            )],
        ),
    ]);
}

#[test]
fn error_true_fails_the_conversion_and_keeps_the_warnings() {
    let c = case(
        "error=true",
        "# check=error=true\nFROM alpine\nMAINTAINER me\nCMD run\n",
        &[],
    );
    match lint(&c) {
        Err(ConvertError::Lint { message, warnings }) => {
            assert_eq!(
                message,
                "lint violation found for rules: JSONArgsRecommended, MaintainerDeprecated"
            );
            assert_eq!(warnings.len(), 2);
        }
        other => panic!("expected a lint error, got {other:?}"),
    }
    let clean = case(
        "error=true clean",
        "# check=error=true\nFROM alpine\nCMD [\"run\"]\n",
        &[],
    );
    assert!(lint(&clean).is_ok());
    let bad = case("bad directive", "# check=skip\nFROM alpine\n", &[]);
    assert_eq!(
        lint(&bad).unwrap_err().to_string(),
        "failed to parse check options: invalid check option \"skip\""
    );
}

#[test]
fn syntax_directive() {
    let opts = ConvertOptions {
        local_unique: Some("test".into()),
        ..ConvertOptions::default()
    };
    let ok = dockerfile_to_llb(
        b"# syntax=docker/dockerfile:1.7\nFROM alpine\n",
        &opts,
        &AnyImage,
    )
    .unwrap();
    assert_eq!(
        ok.notes,
        ["[internal] syntax docker/dockerfile:1.7: using the built-in Dockerfile frontend"]
    );
    let none = dockerfile_to_llb(b"FROM alpine\n", &opts, &AnyImage).unwrap();
    assert!(none.notes.is_empty());
    let err = dockerfile_to_llb(
        b"#!/usr/bin/env buildctl\n# syntax=example.com/frontend:2\nFROM alpine\n",
        &opts,
        &AnyImage,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "dockerfile line 2: syntax \"example.com/frontend:2\": external frontends are not supported yet (only docker/dockerfile, which is built in)"
    );
}

#[test]
fn unknown_instruction_suggests_the_closest() {
    let opts = ConvertOptions {
        local_unique: Some("test".into()),
        ..ConvertOptions::default()
    };
    let err = dockerfile_to_llb(b"FROM alpine\nRUNN echo hi\n", &opts, &AnyImage).unwrap_err();
    assert_eq!(
        err.to_string(),
        "dockerfile parse error on line 2: unknown instruction: RUNN (did you mean RUN?)"
    );
    let err = dockerfile_to_llb(b"FROM alpine\nxyzzy bar\n", &opts, &AnyImage).unwrap_err();
    assert_eq!(
        err.to_string(),
        "dockerfile parse error on line 2: unknown instruction: xyzzy"
    );
}
