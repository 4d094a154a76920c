//! `--chown` resolution: ids as given, names looked up in `/etc/passwd` and
//! `/etc/group` of the root the action names, read safely inside that root.

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use kiln_proto::pb::{ChownOpt, UserOpt, user_opt::User};

use crate::error::{FileOpError, Result};
use crate::resolve::resolve;

/// BuildKit refuses user databases larger than this.
const MAX_USER_FILE: u64 = 10 << 20;

/// A resolved owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u32,
    pub gid: u32,
}

/// Resolves `chopt` (BuildKit's `readUser`). `root_of` maps a
/// `NamedUserOpt.input` index to the root holding the database (None =
/// scratch). Names that are not found resolve to 0, as in BuildKit.
pub fn resolve_owner(
    chopt: Option<&ChownOpt>,
    root_of: &mut dyn FnMut(i64) -> Result<Option<PathBuf>>,
) -> Result<Option<Owner>> {
    let Some(chopt) = chopt else {
        return Ok(None);
    };
    let mut owner = Owner { uid: 0, gid: 0 };
    if let Some(UserOpt { user: Some(u) }) = &chopt.user {
        match u {
            User::ById(id) => {
                owner.uid = *id;
                owner.gid = *id;
            }
            User::ByName(n) => {
                // A name needs a filesystem to look it up in (a `--link` copy has none).
                if n.input < 0 {
                    return Err(invalid_index(n.input));
                }
                if let Some(root) = root_of(n.input)? {
                    // A user name picks the primary group from its passwd line.
                    if let Some(f) = lookup(&root, "/etc/passwd", &n.name, 2)? {
                        owner.uid = field(&f, 2);
                        owner.gid = field(&f, 3);
                    }
                }
            }
        }
    }
    if let Some(UserOpt { user: Some(g) }) = &chopt.group {
        match g {
            User::ById(id) => owner.gid = *id,
            User::ByName(n) => {
                if n.input < 0 {
                    return Err(invalid_index(n.input));
                }
                if let Some(root) = root_of(n.input)?
                    && let Some(f) = lookup(&root, "/etc/group", &n.name, 2)?
                {
                    owner.gid = field(&f, 2);
                }
            }
        }
    }
    Ok(Some(owner))
}

/// BuildKit's error for a named owner with no input to read it from.
fn invalid_index(input: i64) -> FileOpError {
    FileOpError::InvalidOp(format!("invalid user index: {input}"))
}

fn field(fields: &[String], i: usize) -> u32 {
    fields
        .get(i)
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// The colon-separated fields of the first line of `db` whose name is `name`;
/// None when the file or the name is missing.
fn lookup(root: &Path, db: &str, name: &str, min_fields: usize) -> Result<Option<Vec<String>>> {
    let path = resolve(root, db, true)?;
    let mut f = match fs::File::open(&path) {
        Ok(f) => f,
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc_enotdir()) =>
        {
            return Ok(None);
        }
        Err(e) => return Err(FileOpError::io("open", db, e)),
    };
    let meta = f.metadata().map_err(|e| FileOpError::io("stat", db, e))?;
    if !meta.is_file() {
        return Err(FileOpError::UserDb {
            path: db.to_string(),
            reason: "is not a regular file".to_string(),
        });
    }
    let mut buf = Vec::new();
    (&mut f)
        .take(MAX_USER_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| FileOpError::io("read", db, e))?;
    if buf.len() as u64 > MAX_USER_FILE {
        return Err(FileOpError::UserDb {
            path: db.to_string(),
            reason: format!("exceeds {MAX_USER_FILE} bytes"),
        });
    }
    let text = String::from_utf8_lossy(&buf);
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<String> = line.split(':').map(str::to_string).collect();
        if fields.len() > min_fields && fields[0] == name {
            return Ok(Some(fields));
        }
    }
    Ok(None)
}

fn libc_enotdir() -> i32 {
    rustix::io::Errno::NOTDIR.raw_os_error()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_proto::pb::NamedUserOpt;

    fn by_name(name: &str) -> Option<UserOpt> {
        Some(UserOpt {
            user: Some(User::ByName(NamedUserOpt {
                name: name.to_string(),
                input: 0,
            })),
        })
    }

    fn by_id(id: u32) -> Option<UserOpt> {
        Some(UserOpt {
            user: Some(User::ById(id)),
        })
    }

    #[test]
    fn names_and_ids() {
        let t = tempfile::tempdir().unwrap();
        fs::create_dir(t.path().join("etc")).unwrap();
        fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        fs::write(
            t.path().join("etc/group"),
            "root:x:0:\nnogroup:x:65534:\nstaff:x:50:app\n",
        )
        .unwrap();
        let root = t.path().to_path_buf();
        let mut r = |_| Ok(Some(root.clone()));
        let own = |u, g, r: &mut dyn FnMut(i64) -> Result<Option<PathBuf>>| {
            resolve_owner(Some(&ChownOpt { user: u, group: g }), r)
                .unwrap()
                .unwrap()
        };
        assert_eq!(
            own(by_name("app"), None, &mut r),
            Owner {
                uid: 1000,
                gid: 1001
            }
        );
        assert_eq!(
            own(by_name("app"), by_name("staff"), &mut r),
            Owner { uid: 1000, gid: 50 }
        );
        assert_eq!(
            own(by_id(4321), None, &mut r),
            Owner {
                uid: 4321,
                gid: 4321
            }
        );
        assert_eq!(
            own(by_id(0), by_id(65534), &mut r),
            Owner { uid: 0, gid: 65534 }
        );
        assert_eq!(
            own(by_name("ghost"), None, &mut r),
            Owner { uid: 0, gid: 0 }
        );
        assert_eq!(
            own(None, by_name("nogroup"), &mut r),
            Owner { uid: 0, gid: 65534 }
        );
        assert_eq!(resolve_owner(None, &mut r).unwrap(), None);
        let mut scratch = |_| Ok(None);
        assert_eq!(
            own(by_name("app"), None, &mut scratch),
            Owner { uid: 0, gid: 0 }
        );
    }
}
