//! The copy action: fsutil's `Copy` with `cp -a` semantics plus BuildKit's
//! wildcard expansion, dest-dir rules, chown/chmod, include/exclude patterns.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, symlink};
use std::path::{Path, PathBuf};

use kiln_proto::pb::FileActionCopy;
use rustix::fs::{CWD, FileType, Mode, mknodat};

use crate::actions::remove_all;
use crate::chown::Owner;
use crate::error::{FileOpError, Result};
use crate::fsops::{Time, chmod, fix_created_dirs, mkdir_all, set_times};
use crate::mode::ModeSet;
use crate::pattern::{MatchInfo, PatternMatcher, optional_matcher as matcher, resolve_wildcards};
use crate::resolve::{clean, clean_keep_trailing, display, resolve, root_path};
use crate::unpack::unpack;

/// Options of one fsutil copy, decoded from a `FileActionCopy`.
#[derive(Default)]
pub struct CopyOptions {
    pub owner: Option<Owner>,
    pub utime: Option<Time>,
    pub mode: Option<u32>,
    pub mode_set: Option<ModeSet>,
    pub copy_dir_contents: bool,
    pub follow_links: bool,
    pub include: Option<PatternMatcher>,
    pub exclude: Option<PatternMatcher>,
    pub always_replace: bool,
}

/// Runs a copy action from `src_root` into `dest_root` (BuildKit's `docopy`).
pub fn copy_action(
    src_root: &Path,
    dest_root: &Path,
    a: &FileActionCopy,
    owner: Option<Owner>,
) -> Result<()> {
    let src_path = clean_keep_trailing(&a.src);
    let dest_path = clean_keep_trailing(&a.dest);
    if !a.create_dest_path {
        let p = resolve(dest_root, &clean(&a.dest), true)?;
        let parent = p.parent().unwrap_or(dest_root);
        fs::symlink_metadata(parent).map_err(|e| FileOpError::io("stat", clean(&a.dest), e))?;
    }
    let (mode, mode_set) = if !a.mode_str.is_empty() {
        (None, Some(ModeSet::parse(&a.mode_str)?))
    } else if a.mode != -1 {
        (Some(a.mode as u32), None)
    } else {
        (None, None)
    };
    let opts = CopyOptions {
        owner,
        utime: Time::from_action(a.timestamp),
        mode,
        mode_set,
        copy_dir_contents: a.dir_copy_contents,
        follow_links: a.follow_symlink,
        include: matcher(&a.include_patterns)?,
        exclude: matcher(&a.exclude_patterns)?,
        always_replace: a.always_replace_existing_dest_paths,
    };
    // COPY --parents names the paths that must exist under its pivot.
    for req in &a.required_paths {
        if fs::symlink_metadata(root_path(src_root, req, false)?).is_err() {
            return Err(FileOpError::NotFound { path: clean(req) });
        }
    }
    let sources = if a.allow_wildcard {
        let m = resolve_wildcards(src_root, &src_path, a.follow_symlink)?;
        if m.is_empty() {
            if a.allow_empty_wildcard {
                return Ok(());
            }
            return Err(FileOpError::NotFound { path: src_path });
        }
        m
    } else {
        vec![clean(&src_path)]
    };
    for s in sources {
        if a.attempt_unpack_docker_compatibility
            && unpack(src_root, &s, dest_root, &dest_path, owner, opts.utime)?
        {
            continue;
        }
        copy(src_root, &s, dest_root, &dest_path, &opts)?;
    }
    Ok(())
}

/// fsutil's `Copy` of one source path `src` (root-relative) to `dst`
/// (root-relative, a trailing `/` meaning "a directory").
pub fn copy(
    src_root: &Path,
    src: &str,
    dst_root: &Path,
    dst: &str,
    opts: &CopyOptions,
) -> Result<()> {
    let perm = opts.mode.unwrap_or(0o755);
    let io_dst = |op, p: &Path, e| FileOpError::io(op, display(dst_root, p), e);
    // The directory part of dst (or dst itself when it ends in `/`) must exist.
    let ensure = match dst.rsplit_once('/') {
        Some((d, f)) if !f.is_empty() && f != "." => format!("{d}/"),
        _ => dst.to_string(),
    };
    let mut created = Vec::new();
    if !ensure.is_empty() {
        let p = resolve(dst_root, &ensure, true)?;
        created =
            mkdir_all(&p, perm, opts.owner, opts.utime).map_err(|e| io_dst("mkdir", &p, e))?;
    }
    let dst_host = resolve(dst_root, &clean(dst), true)?;
    let src_host = root_path(src_root, src, opts.follow_links)?;
    let src_fi = fs::symlink_metadata(&src_host).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            FileOpError::NotFound { path: clean(src) }
        } else {
            FileOpError::io("lstat", clean(src), e)
        }
    })?;
    let dest_fi = fs::metadata(&dst_host).ok();
    let mut target = dst_host.clone();
    let base = clean(src).rsplit('/').next().unwrap_or("").to_string();
    let into_dir = match &dest_fi {
        Some(d) => (!opts.copy_dir_contents && src_fi.is_dir()) || (!src_fi.is_dir() && d.is_dir()),
        None => false,
    };
    if into_dir && !base.is_empty() {
        target.push(&base);
    }
    let parent = if opts.copy_dir_contents && src_fi.is_dir() && dest_fi.is_none() {
        target.clone()
    } else {
        target
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dst_root.to_path_buf())
    };
    let created2 = mkdir_all(&parent, perm, opts.owner, opts.utime)
        .map_err(|e| io_dst("mkdir", &parent, e))?;
    let mut c = Copier {
        opts,
        src_root,
        dst_root,
        inodes: HashMap::new(),
        parents: Vec::new(),
    };
    c.entry(
        &src_host,
        "",
        &target,
        false,
        &MatchInfo::default(),
        &MatchInfo::default(),
    )?;
    let fix = |d: &[PathBuf]| {
        fix_created_dirs(d, opts.utime).map_err(|e| io_dst("set times of", &dst_host, e))
    };
    fix(&created2)?;
    fix(&created)
}

struct ParentDir {
    src: PathBuf,
    dst: PathBuf,
    copied: bool,
}

struct Copier<'a> {
    opts: &'a CopyOptions,
    src_root: &'a Path,
    dst_root: &'a Path,
    /// Source (dev, inode) of hard-linked files -> their first copy.
    inodes: HashMap<(u64, u64), PathBuf>,
    /// Directories on the current path; not yet `copied` ones are created
    /// only once something inside them is included.
    parents: Vec<ParentDir>,
}

impl Copier<'_> {
    fn src_err(&self, op: &'static str, p: &Path, e: io::Error) -> FileOpError {
        FileOpError::io(op, display(self.src_root, p), e)
    }

    fn dst_err(&self, op: &'static str, p: &Path, e: io::Error) -> FileOpError {
        FileOpError::io(op, display(self.dst_root, p), e)
    }

    fn entry(
        &mut self,
        src: &Path,
        rel: &str,
        target: &Path,
        overwrite: bool,
        parent_inc: &MatchInfo,
        parent_exc: &MatchInfo,
    ) -> Result<()> {
        let mut include = true;
        let mut excluded = false;
        let mut inc_info = MatchInfo::default();
        let mut exc_info = MatchInfo::default();
        if !rel.is_empty() {
            if let Some(m) = &self.opts.include {
                let (hit, info) = m.matches_with_parent(rel, parent_inc);
                include = hit;
                inc_info = info;
            }
            if let Some(m) = &self.opts.exclude {
                let (hit, info) = m.matches_with_parent(rel, parent_exc);
                if hit {
                    include = false;
                    excluded = true;
                }
                exc_info = info;
            }
            let exceptions = self.opts.exclude.as_ref().is_some_and(|e| e.exclusions());
            if !include && self.opts.include.is_none() && !exceptions {
                return Ok(());
            }
        }
        let fi = fs::symlink_metadata(src).map_err(|e| self.src_err("stat", src, e))?;
        if !include && !fi.is_dir() {
            return Ok(());
        }
        let target_fi = match fs::symlink_metadata(target) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(self.dst_err("stat", target, e)),
        };
        if include {
            if self.opts.always_replace
                && let Some(t) = &target_fi
                && !(fi.is_dir() && t.is_dir())
            {
                remove_all(target).map_err(|e| self.dst_err("remove", target, e))?;
            }
            self.create_parents(overwrite)?;
        }
        if !fi.is_dir() {
            self.ensure_empty_file_target(target)?;
        }
        let mut copy_info = include;
        let mut restore_time = false;
        let ft = fi.file_type();
        if ft.is_dir() {
            let created = self.directory(
                src, rel, target, &fi, overwrite, include, excluded, inc_info, exc_info,
            )?;
            if !overwrite {
                copy_info = created;
                restore_time = !created;
            }
        } else if ft.is_file() {
            let key = (fi.dev(), fi.ino());
            match self.inodes.get(&key) {
                Some(first) if fi.nlink() > 1 => fs::hard_link(first, target)
                    .map_err(|e| self.dst_err("hard link", target, e))?,
                _ => {
                    if fi.nlink() > 1 {
                        self.inodes.insert(key, target.to_path_buf());
                    }
                    copy_file(src, target).map_err(|e| self.dst_err("copy file to", target, e))?;
                }
            }
        } else if ft.is_symlink() {
            let link = fs::read_link(src).map_err(|e| self.src_err("read link", src, e))?;
            symlink(&link, target).map_err(|e| self.dst_err("create symlink", target, e))?;
        } else {
            make_special(target, &fi).map_err(|e| self.dst_err("create device", target, e))?;
        }
        if copy_info {
            self.copy_file_info(&fi, src, target)?;
        } else if restore_time && target_fi.is_some() {
            self.copy_times(&fi, target)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn directory(
        &mut self,
        src: &Path,
        rel: &str,
        dst: &Path,
        fi: &Metadata,
        overwrite: bool,
        include: bool,
        excluded: bool,
        inc_info: MatchInfo,
        exc_info: MatchInfo,
    ) -> Result<bool> {
        let mut created = false;
        if include {
            created = self.directory_only(dst, fi, overwrite)?;
        }
        self.parents.push(ParentDir {
            src: src.to_path_buf(),
            dst: dst.to_path_buf(),
            copied: include,
        });
        let res = self.children(src, rel, dst, excluded, &inc_info, &exc_info);
        self.parents.pop();
        res.map(|()| created)
    }

    fn children(
        &mut self,
        src: &Path,
        rel: &str,
        dst: &Path,
        excluded: bool,
        inc_info: &MatchInfo,
        exc_info: &MatchInfo,
    ) -> Result<()> {
        let exceptions = self.opts.exclude.as_ref().is_some_and(|e| e.exclusions());
        if excluded && !exceptions {
            return Ok(());
        }
        let mut names: Vec<_> = fs::read_dir(src)
            .map_err(|e| self.src_err("read", src, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()
            .map_err(|e| self.src_err("read", src, e))?;
        names.sort();
        for name in names {
            let n = name.to_string_lossy();
            let child_rel = if rel.is_empty() {
                n.into_owned()
            } else {
                format!("{rel}/{n}")
            };
            self.entry(
                &src.join(&name),
                &child_rel,
                &dst.join(&name),
                true,
                inc_info,
                exc_info,
            )?;
        }
        Ok(())
    }

    /// Creates `dst` for a source dir; Ok(true) when it did not exist.
    fn directory_only(&self, dst: &Path, fi: &Metadata, overwrite: bool) -> Result<bool> {
        match fs::symlink_metadata(dst) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir(dst).map_err(|e| self.dst_err("mkdir", dst, e))?;
                chmod(dst, fi.mode()).map_err(|e| self.dst_err("chmod", dst, e))?;
                Ok(true)
            }
            Err(e) => Err(self.dst_err("stat", dst, e)),
            Ok(m) if !m.is_dir() => Err(FileOpError::NotADirectory {
                path: display(self.dst_root, dst),
            }),
            Ok(_) => {
                if overwrite {
                    chmod(dst, fi.mode()).map_err(|e| self.dst_err("chmod", dst, e))?;
                }
                Ok(false)
            }
        }
    }

    /// Creates the delayed parent directories of an included entry.
    fn create_parents(&mut self, overwrite: bool) -> Result<()> {
        for i in 0..self.parents.len() {
            if self.parents[i].copied {
                continue;
            }
            let (src, dst) = (self.parents[i].src.clone(), self.parents[i].dst.clone());
            let fi = fs::metadata(&src).map_err(|e| self.src_err("stat", &src, e))?;
            if self.directory_only(&dst, &fi, overwrite)? {
                self.copy_file_info(&fi, &src, &dst)?;
            }
            self.parents[i].copied = true;
        }
        Ok(())
    }

    fn ensure_empty_file_target(&self, dst: &Path) -> Result<()> {
        match fs::symlink_metadata(dst) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(self.dst_err("lstat", dst, e)),
            Ok(m) if m.is_dir() => Err(FileOpError::ReplaceDirWithFile {
                path: display(self.dst_root, dst),
            }),
            Ok(_) => fs::remove_file(dst).map_err(|e| self.dst_err("remove", dst, e)),
        }
    }

    /// Owner, mode, times and xattrs from the source (or the options).
    fn copy_file_info(&self, fi: &Metadata, src: &Path, target: &Path) -> Result<()> {
        let owner = self.opts.owner.unwrap_or(Owner {
            uid: fi.uid(),
            gid: fi.gid(),
        });
        std::os::unix::fs::lchown(target, Some(owner.uid), Some(owner.gid))
            .map_err(|e| self.dst_err("chown", target, e))?;
        if !fi.file_type().is_symlink() {
            let mut mode = fi.mode() & 0o7777;
            if let Some(set) = &self.opts.mode_set {
                mode = set.apply(mode, fi.is_dir());
            } else if let Some(m) = self.opts.mode {
                mode = m & 0o7777;
            }
            chmod(target, mode).map_err(|e| self.dst_err("chmod", target, e))?;
        }
        self.copy_times(fi, target)?;
        copy_xattrs(src, target);
        Ok(())
    }

    fn copy_times(&self, fi: &Metadata, target: &Path) -> Result<()> {
        let (a, m) = match self.opts.utime {
            Some(t) => (t, t),
            None => (
                Time {
                    sec: fi.atime(),
                    nsec: fi.atime_nsec(),
                },
                Time {
                    sec: fi.mtime(),
                    nsec: fi.mtime_nsec(),
                },
            ),
        };
        set_times(target, a, m).map_err(|e| self.dst_err("set times of", target, e))
    }
}

/// Copies file content (copy_file_range under the hood).
fn copy_file(src: &Path, target: &Path) -> io::Result<()> {
    let mut from = fs::File::open(src)?;
    let mut to = fs::File::create(target)?;
    io::copy(&mut from, &mut to)?;
    Ok(())
}

/// FIFOs and devices are recreated; a socket becomes an empty stub file.
fn make_special(target: &Path, fi: &Metadata) -> io::Result<()> {
    let ft = fi.file_type();
    let kind = if ft.is_fifo() {
        FileType::Fifo
    } else if ft.is_char_device() {
        FileType::CharacterDevice
    } else if ft.is_block_device() {
        FileType::BlockDevice
    } else {
        FileType::RegularFile
    };
    let mode = Mode::from_raw_mode(fi.mode() & 0o7777);
    mknodat(CWD, target, kind, mode, fi.rdev()).map_err(io::Error::from)
}

/// Copies extended attributes; like BuildKit, failures are not fatal.
fn copy_xattrs(src: &Path, target: &Path) {
    let Ok(names) = xattr::list(src) else { return };
    for name in names {
        if let Ok(Some(v)) = xattr::get(src, &name) {
            let _ = xattr::set(target, &name, &v);
        }
    }
}

/// Copies the whole tree at `src_root` into the empty `dst_root`, keeping
/// everything (used when an action result is both kept and modified).
pub fn clone_tree(src_root: &Path, dst_root: &Path) -> Result<()> {
    let opts = CopyOptions {
        copy_dir_contents: true,
        ..CopyOptions::default()
    };
    copy(src_root, "/", dst_root, "/", &opts)?;
    let fi = fs::symlink_metadata(src_root).map_err(|e| FileOpError::io("stat", "/", e))?;
    let c = Copier {
        opts: &opts,
        src_root,
        dst_root,
        inodes: HashMap::new(),
        parents: Vec::new(),
    };
    c.copy_file_info(&fi, src_root, dst_root)
}
