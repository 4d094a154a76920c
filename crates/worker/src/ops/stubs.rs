//! Mount stubs: runc creates an empty file or directory in the rootfs for every mount target
//! that does not exist (/etc/hosts, /etc/resolv.conf, RUN mounts). Like BuildKit, those that
//! are still empty after the step are removed, so they never reach the layer.

use std::path::{Path, PathBuf};

/// Targets that do not exist before the step; with `recursive`, their missing parents too.
pub fn missing_targets(root: &Path, targets: &[String], recursive: bool) -> Vec<PathBuf> {
    let mut names: Vec<String> = vec!["/etc/resolv.conf".into(), "/etc/hosts".into()];
    names.extend(targets.iter().cloned());
    let mut missing = Vec::new();
    for name in names {
        let mut rel = kiln_fileop::clean(&format!("/{name}"));
        while rel != "/" {
            let Ok(host) = kiln_fileop::resolve(root, &rel, false) else {
                break;
            };
            if std::fs::symlink_metadata(&host).is_ok() {
                break;
            }
            missing.push(host);
            if !recursive {
                break;
            }
            rel = match Path::new(&rel).parent() {
                Some(p) => p.to_string_lossy().into_owned(),
                None => break,
            };
        }
    }
    missing
}

/// Removes the stubs that are still empty (files of size 0, empty directories), deepest first.
pub fn remove_empty(paths: &[PathBuf]) {
    for p in paths {
        let Ok(meta) = std::fs::symlink_metadata(p) else {
            continue;
        };
        if meta.is_dir() {
            if std::fs::read_dir(p)
                .map(|mut d| d.next().is_none())
                .unwrap_or(false)
            {
                let _ = std::fs::remove_dir(p);
            }
        } else if meta.len() == 0 {
            let _ = std::fs::remove_file(p);
        }
    }
}
