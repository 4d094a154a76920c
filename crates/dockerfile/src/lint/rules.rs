//! The rules of BuildKit's Dockerfile linter (frontend 1.26): names, descriptions and URLs as
//! BuildKit reports them, and the message each one prints.

/// One check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub description: &'static str,
    pub url: &'static str,
    /// Off unless enabled with `experimental=` in the check options.
    pub experimental: bool,
}

const fn rule(name: &'static str, description: &'static str, url: &'static str) -> Rule {
    Rule {
        name,
        description,
        url,
        experimental: false,
    }
}

macro_rules! url {
    ($slug:literal) => {
        concat!("https://docs.docker.com/go/dockerfile/rule/", $slug, "/")
    };
}

pub const STAGE_NAME_CASING: Rule = rule(
    "StageNameCasing",
    "Stage names should be lowercase",
    url!("stage-name-casing"),
);
pub const FROM_AS_CASING: Rule = rule(
    "FromAsCasing",
    "The 'as' keyword should match the case of the 'from' keyword",
    url!("from-as-casing"),
);
pub const NO_EMPTY_CONTINUATION: Rule = rule(
    "NoEmptyContinuation",
    "Empty continuation lines will become errors in a future release",
    url!("no-empty-continuation"),
);
pub const CONSISTENT_INSTRUCTION_CASING: Rule = rule(
    "ConsistentInstructionCasing",
    "All commands within the Dockerfile should use the same casing (either upper or lower)",
    url!("consistent-instruction-casing"),
);
pub const DUPLICATE_STAGE_NAME: Rule = rule(
    "DuplicateStageName",
    "Stage names should be unique",
    url!("duplicate-stage-name"),
);
pub const RESERVED_STAGE_NAME: Rule = rule(
    "ReservedStageName",
    "Reserved words should not be used as stage names",
    url!("reserved-stage-name"),
);
pub const JSON_ARGS_RECOMMENDED: Rule = rule(
    "JSONArgsRecommended",
    "JSON arguments recommended for ENTRYPOINT/CMD to prevent unintended behavior related to OS signals",
    url!("json-args-recommended"),
);
pub const MAINTAINER_DEPRECATED: Rule = rule(
    "MaintainerDeprecated",
    "The MAINTAINER instruction is deprecated, use a label instead to define an image author",
    url!("maintainer-deprecated"),
);
pub const UNDEFINED_ARG_IN_FROM: Rule = rule(
    "UndefinedArgInFrom",
    "FROM command must use declared ARGs",
    url!("undefined-arg-in-from"),
);
pub const WORKDIR_RELATIVE_PATH: Rule = rule(
    "WorkdirRelativePath",
    "Relative workdir without an absolute workdir declared within the build can have unexpected results if the base image changes",
    url!("workdir-relative-path"),
);
pub const UNDEFINED_VAR: Rule = rule(
    "UndefinedVar",
    "Variables should be defined before their use",
    url!("undefined-var"),
);
pub const MULTIPLE_INSTRUCTIONS_DISALLOWED: Rule = rule(
    "MultipleInstructionsDisallowed",
    "Multiple instructions of the same type should not be used in the same stage",
    url!("multiple-instructions-disallowed"),
);
pub const LEGACY_KEY_VALUE_FORMAT: Rule = rule(
    "LegacyKeyValueFormat",
    "Legacy key/value format with whitespace separator should not be used",
    url!("legacy-key-value-format"),
);
pub const REDUNDANT_TARGET_PLATFORM: Rule = rule(
    "RedundantTargetPlatform",
    "Setting platform to predefined $TARGETPLATFORM in FROM is redundant as this is the default behavior",
    url!("redundant-target-platform"),
);
pub const SECRETS_USED_IN_ARG_OR_ENV: Rule = rule(
    "SecretsUsedInArgOrEnv",
    "Sensitive data should not be used in the ARG or ENV commands",
    url!("secrets-used-in-arg-or-env"),
);
pub const INVALID_DEFAULT_ARG_IN_FROM: Rule = rule(
    "InvalidDefaultArgInFrom",
    "Default value for global ARG results in an empty or invalid base image name",
    url!("invalid-default-arg-in-from"),
);
pub const FROM_PLATFORM_FLAG_CONST_DISALLOWED: Rule = rule(
    "FromPlatformFlagConstDisallowed",
    "FROM --platform flag should not use a constant value",
    url!("from-platform-flag-const-disallowed"),
);
pub const COPY_IGNORED_FILE: Rule = rule(
    "CopyIgnoredFile",
    "Attempting to Copy file that is excluded by .dockerignore",
    url!("copy-ignored-file"),
);
pub const INVALID_DEFINITION_DESCRIPTION: Rule = Rule {
    experimental: true,
    ..rule(
        "InvalidDefinitionDescription",
        "Comment for build stage or argument should follow the format: `# <arg/stage name> <description>`. If this is not intended to be a description comment, add an empty line or comment between the instruction and the comment.",
        url!("invalid-definition-description"),
    )
};
pub const EXPOSE_PROTO_CASING: Rule = rule(
    "ExposeProtoCasing",
    "Protocol in EXPOSE instruction should be lowercase",
    url!("expose-proto-casing"),
);
pub const EXPOSE_INVALID_FORMAT: Rule = rule(
    "ExposeInvalidFormat",
    "IP address and host-port mapping should not be used in EXPOSE instruction. This will become an error in a future release",
    url!("expose-invalid-format"),
);

/// Every rule, in BuildKit's order.
pub const ALL: [Rule; 21] = [
    STAGE_NAME_CASING,
    FROM_AS_CASING,
    NO_EMPTY_CONTINUATION,
    CONSISTENT_INSTRUCTION_CASING,
    DUPLICATE_STAGE_NAME,
    RESERVED_STAGE_NAME,
    JSON_ARGS_RECOMMENDED,
    MAINTAINER_DEPRECATED,
    UNDEFINED_ARG_IN_FROM,
    WORKDIR_RELATIVE_PATH,
    UNDEFINED_VAR,
    MULTIPLE_INSTRUCTIONS_DISALLOWED,
    LEGACY_KEY_VALUE_FORMAT,
    REDUNDANT_TARGET_PLATFORM,
    SECRETS_USED_IN_ARG_OR_ENV,
    INVALID_DEFAULT_ARG_IN_FROM,
    FROM_PLATFORM_FLAG_CONST_DISALLOWED,
    COPY_IGNORED_FILE,
    INVALID_DEFINITION_DESCRIPTION,
    EXPOSE_PROTO_CASING,
    EXPOSE_INVALID_FORMAT,
];

// Messages, word for word as BuildKit formats them (Go `%q` is `{:?}` for these ASCII names).

pub fn stage_name_casing(name: &str) -> String {
    format!("Stage name '{name}' should be lowercase")
}
pub fn from_as_casing(from: &str, as_: &str) -> String {
    format!("'{as_}' and '{from}' keywords' casing do not match")
}
pub fn no_empty_continuation() -> String {
    "Empty continuation line".into()
}
pub fn consistent_instruction_casing(cmd: &str, casing: &str) -> String {
    format!("Command '{cmd}' should match the case of the command majority ({casing})")
}
pub fn duplicate_stage_name(name: &str) -> String {
    format!(
        "Duplicate stage name {}, stage names should be unique",
        q(name)
    )
}
pub fn reserved_stage_name(name: &str) -> String {
    format!(
        "Stage name should not use the same name as reserved stage {}",
        q(name)
    )
}
pub fn json_args_recommended(instruction: &str) -> String {
    format!(
        "JSON arguments recommended for {instruction} to prevent unintended behavior related to OS signals"
    )
}
pub fn maintainer_deprecated() -> String {
    "Maintainer instruction is deprecated in favor of using label".into()
}
pub fn undefined_arg_in_from(arg: &str, suggest: Option<&str>) -> String {
    let mut out = format!("FROM argument '{arg}' is not declared");
    if let Some(s) = suggest {
        out.push_str(&format!(" (did you mean {s}?)"));
    }
    out
}
pub fn workdir_relative_path(workdir: &str) -> String {
    format!(
        "Relative workdir {} can have unexpected results if the base image changes",
        q(workdir)
    )
}
pub fn undefined_var(var: &str, suggest: Option<&str>) -> String {
    let mut out = format!("Usage of undefined variable '${var}'");
    if let Some(s) = suggest {
        out.push_str(&format!(" (did you mean ${s}?)"));
    }
    out
}
pub fn multiple_instructions_disallowed(instruction: &str) -> String {
    format!(
        "Multiple {instruction} instructions should not be used in the same stage because only the last one will be used"
    )
}
pub fn legacy_key_value_format(cmd: &str) -> String {
    format!("\"{cmd} key=value\" should be used instead of legacy \"{cmd} key value\" format")
}
pub fn redundant_target_platform(platform: &str) -> String {
    format!(
        "Setting platform to predefined {platform} in FROM is redundant as this is the default behavior"
    )
}
pub fn secrets_used_in_arg_or_env(instruction: &str, key: &str) -> String {
    format!(
        "Do not use ARG or ENV instructions for sensitive data ({instruction} {})",
        q(key)
    )
}
pub fn invalid_default_arg_in_from(base: &str) -> String {
    format!("Default value for ARG {base} results in empty or invalid base image name")
}
pub fn from_platform_flag_const_disallowed(platform: &str) -> String {
    format!(
        "FROM --platform flag should not use constant value {}",
        q(platform)
    )
}
pub fn copy_ignored_file(cmd: &str, file: &str) -> String {
    format!(
        "Attempting to {cmd} file {} that is excluded by .dockerignore",
        q(file)
    )
}
pub fn invalid_definition_description(instruction: &str, name: &str) -> String {
    format!("Comment for {instruction} should follow the format: `# {name} <description>`")
}
pub fn expose_proto_casing(port: &str) -> String {
    format!("Defined protocol '{port}' in EXPOSE instruction should be lowercase")
}
pub fn expose_invalid_format(port: &str) -> String {
    format!(
        "EXPOSE instruction should not define an IP address or host-port mapping, found '{port}'"
    )
}

/// Go's `%q`.
fn q(s: &str) -> String {
    crate::parser::go_quote(s)
}
