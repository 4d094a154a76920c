//! The mounts of an exec op besides its root: binds of other inputs (read-only, or writable
//! with their changes kept as an output or thrown away), cache directories, tmpfs, secrets
//! (files on a private tmpfs, or variables) and SSH sockets.

use crate::Worker;
use crate::cache_mounts::{CacheDir, Sharing};
use crate::mounts::{View, Writable, read_only};
use crate::secrets::Secrets;
use crate::store::Ref;
use kiln_proto::pb;
use kiln_solver::{Inputs, OpError};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Everything the container needs besides its root, kept alive until it is gone.
#[derive(Default)]
pub(super) struct Prepared {
    pub mounts: Vec<kiln_exec::ExtraMount>,
    /// Mount targets, for removing the stubs runc creates.
    pub targets: Vec<String>,
    /// `NAME=value` of secrets exposed as variables.
    pub env: Vec<String>,
    /// Writable mounts and the output index each one's result takes (`None`: discarded).
    pub writables: Vec<(Writable, Option<usize>)>,
    views: Vec<View>,
    caches: Vec<CacheDir>,
    secrets_fs: Option<kiln_snapshot::Mount>,
}

impl Prepared {
    /// Unmounts the writable mounts: their results by output index, the others discarded.
    pub fn finish(self, worker: &Worker) -> Result<Vec<(usize, Ref)>, String> {
        let Prepared {
            writables,
            views,
            caches,
            secrets_fs,
            ..
        } = self;
        drop((views, caches, secrets_fs));
        let mut out = Vec::new();
        for (w, output) in writables {
            match output {
                Some(i) => out.push((i, w.finish(&worker.store)?)),
                None => w.discard(&worker.store)?,
            }
        }
        Ok(out)
    }
}

pub(super) async fn prepare(
    worker: &Arc<Worker>,
    exec: &pb::ExecOp,
    inputs: &Inputs<'_, Ref>,
    secrets: &Secrets,
) -> Result<Prepared, OpError> {
    let mut p = Prepared::default();
    // Whatever is set up is torn down again by dropping `p` if a later mount fails.
    let result = prepare_into(&mut p, worker, exec, inputs, secrets).await;
    match result {
        Ok(()) => Ok(p),
        Err(e) => {
            let _ = tokio::task::spawn_blocking({
                let worker = worker.clone();
                move || p.finish(&worker)
            })
            .await;
            Err(e)
        }
    }
}

async fn prepare_into(
    p: &mut Prepared,
    worker: &Arc<Worker>,
    exec: &pb::ExecOp,
    inputs: &Inputs<'_, Ref>,
    secrets: &Secrets,
) -> Result<(), OpError> {
    for m in exec.mounts.iter().filter(|m| m.dest != "/") {
        let kind = pb::MountType::try_from(m.mount_type).unwrap_or(pb::MountType::Bind);
        let input = if m.input >= 0 {
            Some(inputs.result(m.input as usize).await?)
        } else {
            None
        };
        let source = match kind {
            pb::MountType::Bind => bind(p, worker, m, input).await?,
            pb::MountType::Cache => cache(p, worker, m, input).await?,
            pb::MountType::Tmpfs => {
                let size = m.tmpfs_opt.as_ref().map_or(0, |t| t.size);
                p.mounts.push(kiln_exec::ExtraMount {
                    destination: m.dest.clone(),
                    kind: kiln_exec::MountKind::Tmpfs { size },
                });
                p.targets.push(m.dest.clone());
                continue;
            }
            pb::MountType::Secret => match secret_file(p, worker, m, secrets).await? {
                Some(path) => path,
                None => continue,
            },
            pb::MountType::Ssh => {
                if m.ssh_opt.as_ref().is_some_and(|s| s.optional) {
                    continue;
                }
                return Err(format!(
                    "ssh mount at {:?}: SSH agent forwarding is not supported yet",
                    m.dest
                )
                .into());
            }
        };
        p.mounts.push(kiln_exec::ExtraMount::bind(
            source,
            &m.dest,
            m.readonly || kind == pb::MountType::Secret,
        ));
        p.targets.push(m.dest.clone());
    }
    for s in &exec.secretenv {
        match secrets.get(&s.id).map_err(|e| e.to_string())? {
            Some(value) => {
                let value = String::from_utf8(value)
                    .map_err(|_| format!("secret {} is not UTF-8 text", s.id))?;
                p.env.push(format!("{}={value}", s.name));
            }
            // As BuildKit: an optional secret that is not offered is an empty variable.
            None if s.optional => p.env.push(format!("{}=", s.name)),
            None => return Err(format!("secret {}: not found", s.id).into()),
        }
    }
    Ok(())
}

/// `selector` inside `root`, never escaping it.
fn at_selector(root: &Path, selector: &str) -> Result<PathBuf, OpError> {
    let selector = selector.trim_start_matches('/');
    if selector.is_empty() {
        return Ok(root.to_path_buf());
    }
    let path = kiln_fileop::resolve(root, selector, true)?;
    if std::fs::symlink_metadata(&path).is_err() {
        return Err(format!("mount source /{selector} does not exist").into());
    }
    Ok(path)
}

async fn bind(
    p: &mut Prepared,
    worker: &Arc<Worker>,
    m: &pb::Mount,
    input: Option<Ref>,
) -> Result<PathBuf, OpError> {
    let r = input.unwrap_or_else(Ref::scratch);
    let store = worker.store.clone();
    if m.readonly {
        let view = tokio::task::spawn_blocking(move || read_only(&store, &r)).await??;
        let path = at_selector(&view.path, &m.selector)?;
        p.views.push(view);
        Ok(path)
    } else {
        let w = tokio::task::spawn_blocking(move || Writable::new(&store, &r)).await??;
        let path = at_selector(&w.path, &m.selector);
        let output = usize::try_from(m.output).ok();
        p.writables.push((w, output));
        path
    }
}

async fn cache(
    p: &mut Prepared,
    worker: &Arc<Worker>,
    m: &pb::Mount,
    input: Option<Ref>,
) -> Result<PathBuf, OpError> {
    let opt = m.cache_opt.clone().unwrap_or_default();
    if opt.id.is_empty() {
        return Err(format!("cache mount at {:?} has no id", m.dest).into());
    }
    let sharing = match pb::CacheSharingOpt::try_from(opt.sharing) {
        Ok(pb::CacheSharingOpt::Private) => Sharing::Private,
        Ok(pb::CacheSharingOpt::Locked) => Sharing::Locked,
        _ => Sharing::Shared,
    };
    // As BuildKit: a cache that starts from a ref is a different cache per ref.
    let mut key = format!("cache-dir:{}", opt.id);
    if let Some(r) = &input {
        key.push(':');
        key.push_str(&r.layers.join(","));
    }
    let store = worker.store.clone();
    let dir = worker
        .cache_mounts
        .acquire(&key, sharing, move |dir| {
            let Some(r) = input else { return Ok(()) };
            let view = read_only(&store, &r)?;
            kiln_fileop::clone_tree(&view.path, dir).map_err(|e| e.to_string())?;
            let mode = std::fs::metadata(&view.path).map_err(|e| e.to_string())?;
            std::fs::set_permissions(dir, mode.permissions()).map_err(|e| e.to_string())
        })
        .await?;
    let path = at_selector(&dir.path, &m.selector)?;
    p.caches.push(dir);
    Ok(path)
}

/// Writes the secret to a private tmpfs and returns its file; `None` when an optional secret
/// is not offered.
async fn secret_file(
    p: &mut Prepared,
    worker: &Arc<Worker>,
    m: &pb::Mount,
    secrets: &Secrets,
) -> Result<Option<PathBuf>, OpError> {
    let opt = m.secret_opt.clone().unwrap_or_default();
    let Some(value) = secrets.get(&opt.id).map_err(|e| e.to_string())? else {
        if opt.optional {
            return Ok(None);
        }
        return Err(format!("secret {}: not found", opt.id).into());
    };
    if p.secrets_fs.is_none() {
        let store = worker.store.clone();
        let fs = tokio::task::spawn_blocking(move || store.snapshots.mount_tmpfs())
            .await?
            .map_err(|e| e.to_string())?;
        p.secrets_fs = Some(fs);
    }
    let dir = p
        .secrets_fs
        .as_ref()
        .map(|m| m.target().to_path_buf())
        .ok_or("secret tmpfs missing")?;
    let file = dir.join(format!("{:016x}", rand::random::<u64>()));
    let write = || -> std::io::Result<()> {
        std::fs::write(&file, &value)?;
        std::os::unix::fs::chown(&file, Some(opt.uid), Some(opt.gid))?;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(opt.mode & 0o7777))
    };
    write().map_err(|e| format!("secret {}: {e}", opt.id))?;
    Ok(Some(file))
}
