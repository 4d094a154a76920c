//! The extra conformance cases in conformance/extra-cases (see its README.md). For a case with
//! `llb.pb` (BuildKit's dockerfile2llb converted it), our LLB must equal it op for op, digests
//! included, as for the public cases (convert.rs). A case without `llb.pb` is one BuildKit's
//! converter rejected (it has `expected-error.txt`): our conversion must fail too. Cases that
//! convert but that BuildKit fails to build are checked for failing in the kiln crate's
//! tests/extra_cases.rs.

mod common;

use common::*;
use kiln_dockerfile::convert::dockerfile_to_llb;
use std::path::PathBuf;

fn extra_cases_dir() -> PathBuf {
    manifest_dir().join("../../conformance/extra-cases")
}

fn check_case(name: &str) {
    let dir = extra_cases_dir().join(name);
    assert!(dir.is_dir(), "no case {}", dir.display());
    let fails = dir.join("expected-error.txt").exists();
    assert_ne!(
        fails,
        dir.join("expected.json").exists(),
        "{name}: a case has either expected.json or expected-error.txt"
    );
    if dir.join("llb.pb").exists() {
        check_llb_of(&dir, name);
        return;
    }
    assert!(
        fails,
        "{name}: BuildKit built the case, so it must have BuildKit's llb.pb"
    );
    // Options as a build of the case gives them.
    let opts = build_options(&dir);
    let dockerfile = std::fs::read(case_dockerfile(&dir)).unwrap();
    if dockerfile_to_llb(&dockerfile, &opts, &TestResolver).is_ok() {
        panic!(
            "{name}: conversion succeeded, but BuildKit rejects the Dockerfile:\n{}",
            std::fs::read_to_string(dir.join("expected-error.txt")).unwrap()
        );
    }
}

macro_rules! cases {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check_case($name);
            }
        )*

        const LISTED: &[&str] = &[$($name),*];
    };
}

cases! {
    case_01_copy_onto_symlinks => "01-copy-onto-symlinks",
    case_02_multi_src_no_slash => "02-multi-src-no-slash",
    case_03_copy_dir_onto_file => "03-copy-dir-onto-file",
    case_04_chown_unknown => "04-chown-unknown",
    case_05_chmod_chown_dirs => "05-chmod-chown-dirs",
    case_06_wildcard_nomatch => "06-wildcard-nomatch",
    case_07_copy_from_workdir => "07-copy-from-workdir",
    case_08_hidden_empty => "08-hidden-empty",
    case_09_dockerignore_negation => "09-dockerignore-negation",
    case_10_workdir_vars => "10-workdir-vars",
    case_11_env_arg_corners => "11-env-arg-corners",
    case_12_multiline_label_env => "12-multiline-label-env",
    case_13_shell_forms => "13-shell-forms",
    case_14_entrypoint_cmd_inherit => "14-entrypoint-cmd-inherit",
    case_15_user_numeric => "15-user-numeric",
    case_16_err_user_unknown => "16-err-user-unknown",
    case_17_expose_variants => "17-expose-variants",
    case_18_healthcheck_variants => "18-healthcheck-variants",
    case_19_onbuild_chain => "19-onbuild-chain",
    case_20_same_stage_twice => "20-same-stage-twice",
    case_21_arg_before_from => "21-arg-before-from",
    case_22_heredoc_corners => "22-heredoc-corners",
    case_23_whiteout_opaque => "23-whiteout-opaque",
    case_24_hardlinks_layers => "24-hardlinks-layers",
    case_25_nonroot_run_files => "25-nonroot-run-files",
    case_26_add_corners => "26-add-corners",
    case_27_stage_env_inherit => "27-stage-env-inherit",
    case_28_vars_in_instructions => "28-vars-in-instructions",
    case_29_escape_directive => "29-escape-directive",
    case_30_copy_from_stage_links => "30-copy-from-stage-links",
    case_31_err_from_uppercase_stage => "31-err-from-uppercase-stage",
    case_32_subst_patterns => "32-subst-patterns",
    case_33_scratch_config => "33-scratch-config",
    case_34_copy_onto_existing => "34-copy-onto-existing",
    case_35_ctx_hardlinks_names => "35-ctx-hardlinks-names",
    case_36_copy_link_symlink_dest => "36-copy-link-symlink-dest",
    case_37_dockerfile_named => "37-dockerfile-named",
    case_38_run_exec_form_env => "38-run-exec-form-env",
    case_39_run_mounts_more => "39-run-mounts-more",
    case_40_err_unknown_instruction => "40-err-unknown-instruction",
    case_41_err_onbuild_onbuild => "41-err-onbuild-onbuild",
    case_42_err_expose_invalid => "42-err-expose-invalid",
    case_43_err_copy_missing_src => "43-err-copy-missing-src",
    case_44_healthcheck_1ms => "44-healthcheck-1ms",
    case_45_err_subst_required => "45-err-subst-required",
    case_46_err_stage_cycle => "46-err-stage-cycle",
    case_47_err_bad_chmod => "47-err-bad-chmod",
    case_48_healthcheck_opts => "48-healthcheck-opts",
    case_49_err_link_named_chown => "49-err-link-named-chown",
    case_50_forward_stage_ref => "50-forward-stage-ref",
    case_52_rw_bind_from_stage => "52-rw-bind-from-stage",
    case_53_add_archive_formats => "53-add-archive-formats",
    case_54_workdir_empty_var => "54-workdir-empty-var",
    case_55_err_copy_from_self => "55-err-copy-from-self",
    case_56_err_stopsignal_invalid => "56-err-stopsignal-invalid",
    case_57_workdir_empty_var_first => "57-workdir-empty-var-first",
    case_58_workdir_unclean_abs => "58-workdir-unclean-abs",
    case_59_stopsignal_numeric => "59-stopsignal-numeric",
    case_60_err_copy_exclude_dangling => "60-err-copy-exclude-dangling",
    case_61_err_copy_parents_dot => "61-err-copy-parents-dot",
    case_62_copy_from_image_same_as_base => "62-copy-from-image-same-as-base",
    case_70_run_defaults => "70-run-defaults",
    case_71_mount_cache_from_stage => "71-mount-cache-from-stage",
    case_72_mount_cache_sharing => "72-mount-cache-sharing",
    case_73_mount_bind_rw_image => "73-mount-bind-rw-image",
    case_74_mount_tmpfs_over_dir => "74-mount-tmpfs-over-dir",
    case_75_mount_secret_env_target => "75-mount-secret-env-target",
    case_76_mount_ssh_optional => "76-mount-ssh-optional",
    case_77_mount_relative_targets => "77-mount-relative-targets",
    case_78_mount_option_vars => "78-mount-option-vars",
    case_79_opt_labels => "79-opt-labels",
    case_80_build_arg_from_default => "80-build-arg-from-default",
    case_81_target_unused_failing => "81-target-unused-failing",
    case_82_onbuild_copy_from => "82-onbuild-copy-from",
    case_83_platform_args_from => "83-platform-args-from",
    case_84_copy_chmod_symbolic => "84-copy-chmod-symbolic",
    case_85_copy_link_whiteouts => "85-copy-link-whiteouts",
    case_86_add_chown_local_tar => "86-add-chown-local-tar",
    case_87_heredoc_vars_shell => "87-heredoc-vars-shell",
    case_88_user_uid_gid_groups => "88-user-uid-gid-groups",
    case_89_env_same_line => "89-env-same-line",
    case_90_label_quotes_escapes => "90-label-quotes-escapes",
    case_91_expose_vars => "91-expose-vars",
    case_92_healthcheck_start_interval => "92-healthcheck-start-interval",
    case_93_err_run_exit_code => "93-err-run-exit-code",
    case_94_stopsignal_rtmin => "94-stopsignal-rtmin",
    case_95_run_empty => "95-run-empty",
    case_96_err_empty_run_exec => "96-err-empty-run-exec",
    case_97_copy_exclude_wildcards => "97-copy-exclude-wildcards",
    case_98_err_network_host_unallowed => "98-err-network-host-unallowed",
    case_99_err_secret_required_missing => "99-err-secret-required-missing",
}

/// A case added to conformance/extra-cases must be added to the list above too.
#[test]
fn every_case_is_listed() {
    let mut on_disk: Vec<String> = std::fs::read_dir(extra_cases_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    assert_eq!(on_disk, LISTED, "cases in conformance/extra-cases");
}
