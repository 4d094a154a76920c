//! Resolving a Dockerfile `USER` against the rootfs's /etc/passwd and /etc/group, with
//! BuildKit's rules (executor/oci/user.go over moby/sys/user's GetExecUser).

use std::path::Path;

use crate::error::ExecError;
use crate::rootfs;

/// BuildKit refuses user files larger than this.
const MAX_USER_FILE: u64 = 10 << 20;
/// Ids must fit in a non-negative int32, as in moby/sys/user.
const MAX_ID: i64 = i32::MAX as i64;

/// The process identity a `USER` value resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups as config.json lists them: the primary gid first (BuildKit
    /// ensures it is present), then the groups that name the user in /etc/group.
    pub additional_gids: Vec<u32>,
    /// HOME for when the environment has none: the passwd entry of `uid`, or `/` (as runc).
    pub home: String,
}

struct PasswdEntry {
    name: String,
    uid: i64,
    gid: i64,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: i64,
    members: Vec<String>,
}

/// Resolves `user` (`""`, `name`, `uid`, `name:group`, `uid:gid`, ...) inside `rootfs`.
///
/// - `uid:gid` (both numeric, or `root`) is taken as is, with no supplementary groups;
/// - otherwise the user is looked up in /etc/passwd (a numeric uid that no entry has is
///   still valid, with gid 0); a named user must exist;
/// - a group given explicitly replaces the primary gid and suppresses supplementary groups;
///   without one, every /etc/group entry that lists the matched user name is added;
/// - `""` means uid 0, and falls back to `0:0` whatever goes wrong.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser, ExecError> {
    let passwd = read_passwd(rootfs)?;
    let (uid, gid, sgids) = if user.is_empty() {
        // The default user falls back to 0:0 whatever goes wrong.
        exec_user("0", passwd.as_deref(), rootfs).unwrap_or_default()
    } else if let Some((uid, gid)) = parse_uid_gid(user) {
        (uid, gid, Vec::new())
    } else {
        exec_user(user, passwd.as_deref(), rootfs)?
    };
    let mut additional_gids = sgids;
    if !additional_gids.contains(&gid) {
        additional_gids.insert(0, gid);
    }
    let home = passwd
        .as_deref()
        .and_then(|entries| entries.iter().find(|e| e.uid == i64::from(uid)))
        .map(|e| e.home.clone())
        .unwrap_or_else(|| "/".to_string());
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// BuildKit's fast path: `uid:gid` with both numeric (`root` counts as 0).
fn parse_uid_gid(user: &str) -> Option<(u32, u32)> {
    let (u, g) = user.split_once(':')?;
    let id = |s: &str| -> Option<u32> {
        if s == "root" {
            return Some(0);
        }
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    Some((id(u)?, id(g)?))
}

/// Go's `strconv.Atoi` outcome for a user or group argument: a number, or a name.
fn numeric(arg: &str, user: &str) -> Result<Option<i64>, ExecError> {
    if arg.is_empty() {
        return Ok(None);
    }
    let digits = arg.strip_prefix(['+', '-']).unwrap_or(arg);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(None);
    }
    match arg.parse::<i64>() {
        Ok(id) if (0..=MAX_ID).contains(&id) => Ok(Some(id)),
        _ => Err(ExecError::InvalidUser {
            user: user.to_string(),
            reason: format!("id {arg} out of range"),
        }),
    }
}

fn exec_user(
    spec: &str,
    passwd: Option<&[PasswdEntry]>,
    rootfs: &Path,
) -> Result<(u32, u32, Vec<u32>), ExecError> {
    let mut parts = spec.split(':');
    let user_arg = parts.next().unwrap_or("");
    let group_arg = parts.next().unwrap_or("");
    let uid_arg = numeric(user_arg, spec)?;
    let gid_arg = numeric(group_arg, spec)?;

    let (mut uid, mut gid) = (0i64, 0i64);
    let mut matched_name: Option<&str> = None;
    let found = passwd.unwrap_or_default().iter().find(|e| match uid_arg {
        _ if user_arg.is_empty() => e.uid == 0,
        Some(id) => e.uid == id,
        None => e.name == user_arg,
    });
    if let Some(entry) = found {
        uid = entry.uid;
        gid = entry.gid;
        matched_name = Some(&entry.name);
    } else if !user_arg.is_empty() {
        match uid_arg {
            Some(id) => uid = id,
            None => {
                return Err(ExecError::UnknownUser {
                    user: user_arg.to_string(),
                });
            }
        }
    }

    let mut sgids = Vec::new();
    if !group_arg.is_empty() || matched_name.is_some() {
        let groups = read_group(rootfs)?.unwrap_or_default();
        if !group_arg.is_empty() {
            let hit = groups.iter().find(|g| match gid_arg {
                Some(id) => g.gid == id,
                None => g.name == group_arg,
            });
            gid = match (hit, gid_arg) {
                (Some(g), _) => g.gid,
                (None, Some(id)) => id,
                (None, None) => {
                    return Err(ExecError::UnknownGroup {
                        group: group_arg.to_string(),
                    });
                }
            };
        } else if let Some(name) = matched_name {
            sgids = groups
                .iter()
                .filter(|g| g.members.iter().any(|m| m == name))
                .map(|g| to_id(g.gid))
                .collect();
        }
    }
    Ok((to_id(uid), to_id(gid), sgids))
}

/// Ids read from files are unchecked in Go too; clamp nonsense into range instead of panicking.
fn to_id(id: i64) -> u32 {
    u32::try_from(id).unwrap_or(0)
}

/// Go's Atoi with errors ignored, as moby/sys/user parses numeric fields.
fn field_id(s: &str) -> i64 {
    s.parse().unwrap_or(0)
}

fn read_passwd(rootfs: &Path) -> Result<Option<Vec<PasswdEntry>>, ExecError> {
    let Some(data) = rootfs::read_file(rootfs, "/etc/passwd", MAX_USER_FILE)? else {
        return Ok(None);
    };
    Ok(Some(parse_passwd(&String::from_utf8_lossy(&data))))
}

fn read_group(rootfs: &Path) -> Result<Option<Vec<GroupEntry>>, ExecError> {
    let Some(data) = rootfs::read_file(rootfs, "/etc/group", MAX_USER_FILE)? else {
        return Ok(None);
    };
    Ok(Some(parse_group(&String::from_utf8_lossy(&data))))
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let get = |i: usize| f.get(i).copied().unwrap_or("");
            PasswdEntry {
                name: get(0).to_string(),
                uid: field_id(get(2)),
                gid: field_id(get(3)),
                home: get(5).to_string(),
            }
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let f: Vec<&str> = line.split(':').collect();
            let get = |i: usize| f.get(i).copied().unwrap_or("");
            GroupEntry {
                name: get(0).to_string(),
                gid: field_id(get(2)),
                members: get(3)
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(str::to_string)
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The users and groups of conformance case 09-workdir-user, plus busybox's own.
    fn rootfs() -> tempfile::TempDir {
        let tmp = tempfile::tempdir().unwrap();
        let etc = tmp.path().join("etc");
        std::fs::create_dir(&etc).unwrap();
        std::fs::write(
            etc.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\n\
             nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n\
             app:x:1000:1000:app user:/home/app:/bin/sh\n\
             svc:x:2000:3000::/nonexistent:/bin/false\n",
        )
        .unwrap();
        std::fs::write(
            etc.join("group"),
            "root:x:0:\n# a comment\nnogroup:x:65534:\napp:x:1000:\nsvcgrp:x:3000:\nextra:x:4444:app,svc\n",
        )
        .unwrap();
        tmp
    }

    fn check(user: &str, uid: u32, gid: u32, gids: &[u32], home: &str) {
        let tmp = rootfs();
        let got = resolve_user(tmp.path(), user).unwrap();
        let want = ResolvedUser {
            uid,
            gid,
            additional_gids: gids.to_vec(),
            home: home.into(),
        };
        assert_eq!(got, want, "USER {user:?}");
    }

    #[test]
    fn conformance_case_09_users() {
        check("", 0, 0, &[0], "/root");
        check("root", 0, 0, &[0], "/root");
        // `id` printed groups=1000(app),4444(extra)
        check("app", 1000, 1000, &[1000, 4444], "/home/app");
        check("1000", 1000, 1000, &[1000, 4444], "/home/app");
        // numeric pair nobody names: taken as is, no supplementary groups, HOME=/
        check("4000:5000", 4000, 5000, &[5000], "/");
        // named group replaces the primary one and drops supplementary groups
        check("svc:app", 2000, 1000, &[1000], "/nonexistent");
        check("svc", 2000, 3000, &[3000, 4444], "/nonexistent");
        check("app:extra", 1000, 4444, &[4444], "/home/app");
        check("app:4444", 1000, 4444, &[4444], "/home/app");
        check("app:9999", 1000, 9999, &[9999], "/home/app");
        // a numeric uid no entry has: gid 0
        check("4000", 4000, 0, &[0], "/");
        check("root:0", 0, 0, &[0], "/root");
    }

    #[test]
    fn unknown_names_fail() {
        let tmp = rootfs();
        assert!(matches!(
            resolve_user(tmp.path(), "ghost"),
            Err(ExecError::UnknownUser { .. })
        ));
        assert!(matches!(
            resolve_user(tmp.path(), "app:ghosts"),
            Err(ExecError::UnknownGroup { .. })
        ));
        assert!(matches!(
            resolve_user(tmp.path(), "99999999999"),
            Err(ExecError::InvalidUser { .. })
        ));
    }

    #[test]
    fn missing_files_allow_numeric_users_only() {
        let tmp = tempfile::tempdir().unwrap();
        let r = resolve_user(tmp.path(), "").unwrap();
        assert_eq!((r.uid, r.gid, r.home.as_str()), (0, 0, "/"));
        let r = resolve_user(tmp.path(), "123").unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids), (123, 0, vec![0]));
        assert!(resolve_user(tmp.path(), "app").is_err());
    }

    #[test]
    fn passwd_symlinked_outside_the_rootfs_is_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let rootfs = tmp.path().join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        let outside = tmp.path().join("host-passwd");
        std::fs::write(&outside, "evil:x:4321:4321::/evil:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(&outside, rootfs.join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_user(&rootfs, "evil"),
            Err(ExecError::UnknownUser { .. })
        ));
        let r = resolve_user(&rootfs, "4321").unwrap();
        assert_eq!(
            (r.gid, r.home.as_str()),
            (0, "/"),
            "host entry must not leak"
        );
    }
}
